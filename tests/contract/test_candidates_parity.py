"""Every blocking key and every link decision is the same against the embedded store and the
real Redis store (the local server, not an in-process fake): the same records give the same
candidates, person ids and explanations."""

import random

from matchers.features import person_record
from matchers.linker import Linker
from matchers.normalise import id_check_char
from matchers.pseudo import Pseudonymiser
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import MemoryKV, RedisKV


def _rid(area, birth, seq):
    body = f"{area}{birth}{seq:03d}"
    return body + id_check_char(body)


def _records(n=60, seed=3):
    rng = random.Random(seed)
    names = ["陈丽", "王晓明", "张伟", "李娜", "欧阳娜娜", "买买提·吐尔逊"]
    out = []
    for i in range(n):
        k = rng.randrange(12)
        idn = _rid("340102", f"1988031{k % 9}", 2 * k + 1)
        person = {"name": names[k % len(names)], "phone": f"1380000{k:04d}"}
        r = rng.random()
        if r < 0.5:
            person["id_number"] = idn
        elif r < 0.6:
            person["id_number"] = idn[:10] + str((int(idn[10]) + 3) % 10) + idn[11:]  # typo
        elif r < 0.7:
            person["id_number"] = idn[:6] + idn[8:17]  # legacy 15 digits
        if rng.random() < 0.3:
            person["name"] = {"陈丽": "Li CHEN", "王晓明": "王小明"}.get(person["name"],
                                                                    person["name"])
        if rng.random() < 0.4:
            person["birth_date"] = f"1988-03-1{k % 9}"
        out.append(({"source": "rental", "record_id": f"R{i}", "person": person}, f"rental:R{i}"))
    return out


def _run(kv):
    pseudo = Pseudonymiser("parity")
    store = KVIdentityStore(kv)
    linker = Linker(store, pseudo, 0.90)
    trace = []
    for rec, key in _records():
        pr = person_record(rec, key, pseudo)
        cands = sorted(c.person_id for c in linker.finder.candidates(pr, store))
        res = linker.link(pr)
        trace.append((key, cands, res.person_id, res.explanation, res.merged))
    return trace, {key: store.resolve(store.link_of(key)) for _, key in _records()}


def test_embedded_and_redis_give_the_same_candidates_and_links(redis_worker, settings):
    embedded = _run(MemoryKV())
    redis = _run(RedisKV(redis_worker, settings.redis_prefix))
    assert embedded == redis
    assert len(set(embedded[1].values())) < len(embedded[1])  # something did link
