"""Python with PYTHONMALLOC=malloc (run by the py_objects wrapper): every object comes from
malloc. A data-processing script's life: parse records into dicts of strings, ints and lists,
index and group them, sort, serialise and parse back, drop most of it; in rounds. Prints a
checksum that must not depend on the allocator."""
import hashlib
import json
import sys

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
ROUNDS = max(1, round(3 * SCALE))
ROWS = 60_000


def parse(round_no):
    lines = [f"{i},user{(i * 7919 + round_no) % 50_000},{i % 97},{(i * 31) % 1000 / 10}"
             for i in range(ROWS)]
    rows = []
    for line in lines:
        ident, name, group, score = line.split(",")
        rows.append({"id": int(ident), "name": name, "group": int(group), "score": float(score),
                     "tags": [name[-2:], group]})
    return rows


def process(rows):
    by_group = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    summary = {g: (len(rs), sum(r["score"] for r in rs), max(rs, key=lambda r: r["score"])["name"])
               for g, rs in by_group.items()}
    names = sorted({r["name"] for r in rows})
    top = sorted(rows, key=lambda r: (-r["score"], r["name"]))[:1000]
    text = json.dumps(top)
    back = json.loads(text)
    words = " ".join(r["name"].upper() for r in rows[::3]).split()
    return summary, len(names), back[0]["name"], len(words)


def main():
    h = hashlib.sha256()
    kept = []
    for round_no in range(ROUNDS):
        rows = parse(round_no)
        summary, n_names, first, n_words = process(rows)
        kept.append(rows[::50])  # a little survives each round
        h.update(repr(sorted(summary.items())[:5]).encode())
        h.update(f"{n_names} {first} {n_words}".encode())
        del rows
    h.update(str(sum(len(k) for k in kept)).encode())
    print("py_objects", ROUNDS, h.hexdigest()[:16])


main()
