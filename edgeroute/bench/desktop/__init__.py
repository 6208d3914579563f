"""Desktop tasks (issue 22): the traffic edgeroute is built for, with deterministic graders.

``tasks`` generates the labelled set from seeded generators (``edgeroute bench value --write-tasks``; the shipped copy
is ``bench/data/desktop.jsonl``), ``graders`` grades an answer by the task's ``grader``, ``judge`` is the cloud-judge
grader for free text (evaluation only), ``value`` is ``edgeroute bench value``.
"""
