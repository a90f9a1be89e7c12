"""The isolated grader: student code runs only in sandboxed worker processes; the trusted side compares.

worker.py is the sandboxed side (standalone: it never imports ``autograde``); sandbox.py starts and kills it;
wire.py checks what comes back; worker_student.py serves the Student protocol from it; batch.py grades a
class.
"""
