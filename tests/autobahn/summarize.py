"""Summarizes an Autobahn fuzzingclient index.json: a table by section, the cases that
were not OK, and a closing 'N passed, N failed' line. Exits 1 on any FAILED case, or if
no case ran at all."""
import collections
import json
import sys

GOOD = {"OK", "NON-STRICT", "INFORMATIONAL"}


def main(path):
    with open(path) as f:
        index = json.load(f)
    results = index.get("switchboard", {})
    if not results:
        print("autobahn: no results in %s" % path)
        return 1
    by_section = collections.OrderedDict()
    failed, notes = [], []

    def key(case):
        return [int(p) for p in case.split(".")]

    for case in sorted(results, key=key):
        r = results[case]
        section = case.split(".")[0]
        counts = by_section.setdefault(section, collections.Counter())
        behavior, close = r.get("behavior"), r.get("behaviorClose")
        worst = behavior if behavior != "OK" else close
        if behavior not in GOOD or close not in GOOD:
            worst = "FAILED" if "FAILED" in (behavior, close) else (behavior if behavior not in GOOD else close)
        counts[worst] += 1
        if worst not in GOOD:
            failed.append("%s: behavior=%s close=%s" % (case, behavior, close))
        elif worst != "OK":
            notes.append("%s: %s" % (case, worst))

    kinds = sorted({k for c in by_section.values() for k in c})
    print("| section | cases | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for section, counts in by_section.items():
        print("| %s | %d | %s |" % (section, sum(counts.values()), " | ".join(str(counts.get(k, 0)) for k in kinds)))
    for n in notes:
        print("  note " + n)
    for f in failed:
        print("  FAILED " + f)
    total = sum(sum(c.values()) for c in by_section.values())
    print("autobahn: %d passed, %d failed" % (total - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
