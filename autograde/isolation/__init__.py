"""The trusted side of the sandbox: student code runs only in sandboxed worker processes; this side starts them
and reads what they send back.

boot.py starts the zygote with the sources of :mod:`autograde.worker` (everything that runs inside a worker);
sandbox.py holds the zygote and its workers; worker_student.py serves the Student protocol from a worker;
replies.py checks every reply; lanes.py grades submissions in trusted processes, one at a time each.
"""
