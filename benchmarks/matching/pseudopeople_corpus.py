"""The pseudopeople corpus as a user would feed it to reglink: the decennial census, Social
Security and W-2 records of pseudopeople's bundled sample population ("Anytown", ~10k
simulants), with pseudopeople's default noise, as contract-valid `person` records plus a
truth file (record -> simulant).

pseudopeople pins its own simulation stack (vivarium), so it lives in a venv of its own:

    python3 -m venv .venv-pp && .venv-pp/bin/pip install 'pseudopeople>=1.3,<2'
    .venv-pp/bin/python benchmarks/matching/pseudopeople_corpus.py --out /tmp/pp
    .venv/bin/python benchmarks/matching/run.py --corpora pseudopeople --pseudopeople /tmp/pp

Mapping (what a user converting these files would write, nothing tuned to the matcher):
``name`` is first and last name; ``birth_date`` the date of birth rewritten as YYYY-MM-DD
by position (a noised value that is no real date stays as it is and is flagged, not
dropped); ``sex`` M/F; the SSN is ``id_number`` with ``id_type: other``; the census address
and the W-2 mailing address are the record's top-level ``address``. Race and ethnicity, which
the census carries, are never copied: no sensitive attribute is matching evidence.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _s(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def _dob(v: str) -> str:
    """MM/DD/YYYY (census) or YYYYMMDD (SSA) as YYYY-MM-DD, by position."""
    if len(v) == 10 and v[2] == "/" and v[5] == "/":
        return f"{v[6:]}-{v[:2]}-{v[3:5]}"
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v


def _record(prefix: str, n: int, row: dict, address: str) -> tuple[dict, str]:
    person: dict = {"name": " ".join(x for x in (_s(row.get("first_name")),
                                                  _s(row.get("last_name"))) if x)}
    dob = _s(row.get("date_of_birth"))
    if dob:
        person["birth_date"] = _dob(dob)
    sex = {"Female": "F", "Male": "M"}.get(_s(row.get("sex")))
    if sex:
        person["sex"] = sex
    ssn = _s(row.get("ssn"))
    if ssn:
        person["id_number"], person["id_type"] = ssn, "other"
    rec: dict = {"source": "person", "record_id": f"{prefix}{n}", "person": person}
    if address:
        rec["address"] = address
    return rec, _s(row["simulant_id"])


def _join(row: dict, *cols: str) -> str:
    return " ".join(x for x in (_s(row.get(c)) for c in cols) if x)


def generate(seed: int = 0) -> list[tuple[dict, str]]:
    import pseudopeople as pp

    census = pp.generate_decennial_census(seed=seed).to_dict("records")
    ssa = pp.generate_social_security(seed=seed).to_dict("records")
    w2 = pp.generate_taxes_w2_and_1099(seed=seed).to_dict("records")
    out = [_record("C", i, r, _join(r, "street_number", "street_name", "unit_number", "city",
                                    "state", "zipcode")) for i, r in enumerate(census)]
    out += [_record("S", i, r, "") for i, r in enumerate(ssa)]
    out += [_record("W", i, r, _join(r, "mailing_address_street_number",
                                     "mailing_address_street_name",
                                     "mailing_address_unit_number", "mailing_address_po_box",
                                     "mailing_address_city", "mailing_address_state",
                                     "mailing_address_zipcode")) for i, r in enumerate(w2)]
    return [(rec, true) for rec, true in out if rec["person"]["name"] or "id_number" in
            rec["person"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = generate(args.seed)
    with (args.out / "events.jsonl").open("w", encoding="utf-8") as ev, \
            (args.out / "truth.jsonl").open("w", encoding="utf-8") as tr:
        for rec, true in rows:
            ev.write(json.dumps(rec, ensure_ascii=False) + "\n")
            tr.write(json.dumps({"source": "person", "record_id": rec["record_id"],
                                 "person": true}) + "\n")
    print(f"pseudopeople corpus: {len(rows)} records of {len({t for _r, t in rows})} "
          f"simulants in {args.out}")


if __name__ == "__main__":
    main()
