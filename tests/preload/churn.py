"""Dicts, lists and strings churned in 4 threads; prints a deterministic checksum."""
import hashlib
import threading

out = [None] * 4


def work(t):
    h = hashlib.md5()
    for rnd in range(30):
        d = {f"k{t}-{i}": [i] * (i % 13) for i in range(4000)}
        s = "".join(sorted(d)[:500])
        lst = sorted((len(v), k) for k, v in d.items())
        h.update(s.encode())
        h.update(str(lst[rnd]).encode())
        del d, lst
    out[t] = h.hexdigest()


ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for x in ts:
    x.start()
for x in ts:
    x.join()
print("\n".join(out))
