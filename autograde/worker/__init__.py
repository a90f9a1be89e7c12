"""Everything that runs inside a sandboxed worker, in one package shipped to the zygote as source.

The rule of this folder: its modules import only the standard library, torch, and each other (relatively), never
the rest of ``autograde``. The trusted side imports them too (the results types, the call protocol, the codec, the
table of protections); the zygote gets their sources over its control socket, so that neither the graders nor the
references are on its path. What is shipped is this folder, every ``.py`` file in it: there is no list to keep.

- :mod:`.results`: what grading produces (failure kinds, outcomes, a submission's result);
- :mod:`.protocol`: what a grader test asks of a submission (:class:`~.protocol.Call`, its result, a module's
  description);
- :mod:`.in_process`: the student whose definitions live in a namespace of this process (the nbgrader kernel's
  globals, or a worker's), with its limits and the forbidden-call recorder;
- :mod:`.codec`: the bytes on the zygote's sockets (both sides);
- :mod:`.protections`: what the kernel enforces, one module per mechanism behind one table;
- :mod:`.zygote`: the process that imports torch once and forks one worker per submission;
- :mod:`.serve`: a worker's set-up handshake and its request loop.

The trusted side (:mod:`autograde.isolation.boot`) starts the zygote with these sources and serves them as the
package ``_autograde_sandbox``; so this file, like every other here, must run without a ``__file__``.
"""
