"""Run one coverage-guided fuzz target (atheris / libFuzzer) for a set time.

    python fuzz/run.py TARGET [--seconds N] [--workdir DIR] [libFuzzer options or files]

TARGET is ``certificate``, ``session`` or ``policy`` (see fuzz/targets.py). The corpus
lives in ``DIR/TARGET/corpus`` (seeded on first use); crashing inputs are written to
``DIR/TARGET/crash-*``. Give file paths instead of running for a time to replay them:
``python fuzz/run.py session /tmp/tlsconnector-fuzz/session/crash-1234``.

Needs the ``fuzz`` extra: ``pip install -e '.[fuzz]'``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

# Instrument tlsconnector (and the stdlib parsers it hands input to) for coverage.
with atheris.instrument_imports(include=["tlsconnector", "targets", "tomllib", "json"]):
    import targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("target", choices=sorted(targets.TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tlsconnector-fuzz"))
    args, extra = parser.parse_known_args()
    base = Path(args.workdir) / args.target
    corpus = base / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for number, seed in enumerate(targets.seeds(args.target)):
            (corpus / f"seed-{number}").write_bytes(seed)
    replay = [item for item in extra if not item.startswith("-")]
    libfuzzer = [
        sys.argv[0],
        *extra,
        f"-artifact_prefix={base}/",
        "-rss_limit_mb=2048",
        "-timeout=30",
        "-max_len=16384",
    ]
    dictionary = Path(__file__).parent / "dictionaries" / f"{args.target}.dict"
    if dictionary.is_file():  # tokens of the format, so mutations stay near valid input
        libfuzzer.append(f"-dict={dictionary}")
    if not replay:
        libfuzzer += [f"-max_total_time={args.seconds}", "-print_final_stats=1", str(corpus)]
    target = targets.TARGETS[args.target]
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
