"""After grading (instructors only): the class report, similar submissions and grades for the LMS.

- :mod:`.run` reads what a grading run wrote (``results.json`` per submission, ``summary.json``), also from an
  nbgrader course's grading folder or Gradescope's export; :mod:`.index` finds the graded notebooks;
- :mod:`.stats` computes the class's figures, :mod:`.figures` draws them, :mod:`.compose` says them as a
  :mod:`.document` that :mod:`.html` and :mod:`.markdown` render, keeping student text inert (:mod:`.text`);
- :mod:`.answers`, :mod:`.normalise`, :mod:`.fingerprints` and :mod:`.similarity` find similar submissions;
- :mod:`.gradebook` and :mod:`.lms` write grades for Canvas, Moodle or a plain CSV;
- :mod:`.build` writes the report; :mod:`.cli` holds the ``report`` and ``export`` commands.
"""
