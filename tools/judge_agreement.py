"""How far the cloud-judge grader agrees with the deterministic graders on the desktop tasks' cached local answers.

    python tools/judge_agreement.py [--per-family 10] [--cloud-url URL --cloud-model M] [--out FILE]

Without ``--cloud-url`` it starts the loopback stand-in (``python -m llama_cpp.server`` with the default model): a
135M judge, so its agreement says how weak such a judge is, not how good a frontier one would be. Evaluation only:
nothing is trained or calibrated on the verdicts. Needs ``edgeroute bench value`` to have cached the answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeroute.bench.desktop.collect import load_tasks, local_answers
from edgeroute.bench.desktop.graders import grade
from edgeroute.bench.desktop.judge import agreement, judge
from edgeroute.bench.desktop.report import TASKS_PATH
from edgeroute.bench.standin import STAND_IN_MODEL, StandInServer
from edgeroute.cloud.openai_compat import OpenAICompatBackend
from edgeroute.local.llama import LlamaCppModel


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=10)
    ap.add_argument("--cloud-url")
    ap.add_argument("--cloud-model", default=STAND_IN_MODEL)
    ap.add_argument("--out")
    args = ap.parse_args()
    tasks = load_tasks(TASKS_PATH)
    engine = LlamaCppModel()
    answers, _ = local_answers(engine, tasks, generate=False)
    engine.close()
    picked, seen = [], {}
    for t in tasks:
        if t["id"] in answers and seen.get(t["family"], 0) < args.per_family:
            seen[t["family"]] = seen.get(t["family"], 0) + 1
            picked.append(t)
    server = None
    if args.cloud_url is None:
        server = StandInServer()
        server.start()
    url = args.cloud_url or server.base_url  # type: ignore[union-attr]
    cloud = OpenAICompatBackend(url, args.cloud_model, read_timeout_s=120.0)
    try:
        judged, graded, fams = [], [], []
        for k, t in enumerate(picked, 1):
            judged.append(judge(cloud, t, answers[t["id"]]["text"]))
            graded.append(grade(t, answers[t["id"]]["text"]))
            fams.append(t["family"])
            print(f"\rjudged {k}/{len(picked)}", end="", file=sys.stderr)
        print(file=sys.stderr)
    finally:
        cloud.close()
        if server is not None:
            server.stop()
    report = {"judge": f"{args.cloud_model} at {'the loopback stand-in' if server else url}",
              "all": agreement(judged, graded),
              "by_family": {f: agreement([j for j, g in zip(judged, fams) if g == f],
                                         [x for x, g in zip(graded, fams) if g == f]) for f in sorted(set(fams))}}
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
