"""DLFS2 ch08 with rnnfast: attention seq2seq on date.txt (reversed input).

Recipe of DLFS2 ch08/train.py: wordvec 16, hidden 256, batch 128, Adam (lr
0.001), global-norm clipping 5.0, DLFS2's exact 45,000 / 5,000 split.
Exact-match accuracy on all 5,000 test rows after each epoch.  Acceptance
bar (shared/data/README.md): >= 99 % within 5 epochs (DLFS2's own run:
0.00 %, 51.70 %, 99.90 % after epochs 1-3).  Note that this split leaks
1,405 test questions into train.

    python examples/seq2seq_dates.py [--data ../shared/data/seq2seq/date.txt]

Writes examples/results/seq2seq_dates.json.  Not run in CI.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seq2seq_addition import parse, run          # noqa: E402

if __name__ == "__main__":
    run(parse(__doc__, "date.txt", 256, 5, "attention", "seq2seq_dates"), "seq2seq_dates")
