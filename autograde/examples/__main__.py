"""``python -m autograde.examples``: rewrite the example submissions from the current release and solutions."""

from autograde.examples import SPECS, write_examples

for assignment in SPECS:
    for path in write_examples(assignment):
        print(f"wrote {path}")
