"""The model is the user's choice: `reglink train` writes only where it is told, `--model` /
REGLINK_MODEL select a model for replay and evaluate, links and alerts carry its id,
`reglink model show` prints its card, and a store refuses a model of other features. And every
identifying field is evidence: the top-level address of rental, residence and person records,
Latin names with nicknames, initials and surname romanisations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from matchers.comparators.latin_names import initials_match, nickname_match, variant_keys
from matchers.compare import FSComparator
from matchers.features import person_record
from matchers.model import DEFAULT_MODEL_FILE, FSModel, ModelError, default_model, load_model
from matchers.pseudo import Pseudonymiser
from matchers.types import Identity
from reglink import cli
from reglink.core.pipeline import Pipeline
from reglink.core.settings import load_settings
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

PSEUDO = Pseudonymiser("model-choice")


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    got = CliRunner().invoke(cli.main, ["simulate", "--persons", "300", "--days", "5",
                                        "--seed", "11", "--watch-share", "0.05",
                                        "--out", str(out)])
    assert got.exit_code == 0, got.output
    return out


@pytest.fixture(scope="module")
def trained(sim: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m.json"
    got = CliRunner().invoke(cli.main, ["train", str(sim), "--out", str(out)])
    assert got.exit_code == 0, got.output
    return out


def test_train_needs_out_and_never_writes_the_shipped_model(sim: Path) -> None:
    before = DEFAULT_MODEL_FILE.read_bytes()
    runner = CliRunner()
    got = runner.invoke(cli.main, ["train", str(sim)])
    assert got.exit_code == 2 and "--out" in got.output
    got = runner.invoke(cli.main, ["train", str(sim), "--out", str(DEFAULT_MODEL_FILE)])
    assert got.exit_code == 2
    assert "is the shipped model" in got.output and len(got.output.strip().splitlines()) == 1
    assert DEFAULT_MODEL_FILE.read_bytes() == before


def test_a_trained_model_says_what_it_was_trained_on(trained: Path, sim: Path) -> None:
    model = FSModel.load(trained)
    on = model.trained_on
    assert on["files"] == [f"{sim.name}/events.jsonl"]
    events = (sim / "events.jsonl").read_text(encoding="utf-8").splitlines()
    watch = sum(1 for line in events if json.loads(line)["source"] == "watchlist")
    assert on["records"] == len(events) - watch
    assert 0 < on["person_blocks"] <= on["records"] and len(on["date"]) == 10


def test_model_show_prints_the_card(trained: Path) -> None:
    got = CliRunner().invoke(cli.main, ["model", "show", str(trained)])
    assert got.exit_code == 0, got.output
    model = FSModel.load(trained)
    out = got.output
    assert out.startswith(f"model {model.version} ")
    assert "trained on: files" in out and f"lambda {model.lam:.6g}" in out
    assert f"name term frequencies: {len(model.tf)} keys" in out
    for feature, spec in model.comparators.items():
        assert f"feature {feature}: comparator {spec['name']}@{spec['version']}" in out
    w = model.weight("address", "same_premises")
    assert any(line.split()[:1] == ["same_premises"] and line.split()[-1] == f"{w:+.2f}"
               for line in out.splitlines())


def test_model_show_refuses_a_file_that_is_no_model_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    got = CliRunner().invoke(cli.main, ["model", "show", str(bad)])
    assert got.exit_code == 2 and len(got.output.strip().splitlines()) == 1
    assert "not a JSON object" in got.output


def test_replay_and_evaluate_use_the_chosen_model(sim: Path, trained: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    runner = CliRunner()
    chosen = FSModel.load(trained).version
    assert chosen != default_model().version
    got = runner.invoke(cli.main, ["replay", str(sim / "events.jsonl"), "--out",
                                   str(tmp_path / "a"), "--model", str(trained)])
    assert got.exit_code == 0, got.output
    alerts = [json.loads(x) for x in (tmp_path / "a" / "alerts.jsonl").read_text().splitlines()]
    assert alerts and {a["model"] for a in alerts} == {chosen}
    got = runner.invoke(cli.main, ["evaluate", str(sim), str(tmp_path / "a"),
                                   "--model", str(trained)])
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["model"] == [chosen]
    # the same output checked against the shipped model is refused, in one line
    monkeypatch.setenv("REGLINK_MODEL", str(DEFAULT_MODEL_FILE))
    got = runner.invoke(cli.main, ["evaluate", str(sim), str(tmp_path / "a")])
    assert got.exit_code == 2 and len(got.output.strip().splitlines()) == 1
    assert chosen in got.output and default_model().version in got.output
    # REGLINK_MODEL selects the model of a replay as --model does
    monkeypatch.setenv("REGLINK_MODEL", str(trained))
    got = runner.invoke(cli.main, ["replay", str(sim / "events.jsonl"), "--out",
                                   str(tmp_path / "b")])
    assert got.exit_code == 0, got.output
    assert (tmp_path / "b" / "alerts.jsonl").read_bytes() == \
        (tmp_path / "a" / "alerts.jsonl").read_bytes()


def test_links_carry_the_model_id(trained: Path) -> None:
    for path, expected in ((None, default_model()), (trained, FSModel.load(trained))):
        pipe = Pipeline(load_settings(hmac_key="k", model=path), MemoryKV())
        _pid, outs = pipe.process({"source": "person", "record_id": "HR-1",
                                   "person": {"name": "陈丽", "birth_date": "1988-03-15"},
                                   "address": "杭州市西湖区科技路86号"})
        linked = [o.value for o in outs if o.topic == "linked"]
        assert linked and linked[0]["model"] == expected.version
        assert linked[0]["linker"].endswith(f"+{expected.version}")


def test_a_missing_model_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No such file") as err:
        load_model(tmp_path / "nope.json")
    assert "\n" not in str(err.value)


def test_a_store_refuses_a_model_of_other_features() -> None:
    kv = MemoryKV()
    shipped = default_model()
    sk.ensure_model(kv, shipped.features, shipped.version)  # an unmarked store takes it
    assert kv.get(sk.MODEL_KEY) == shipped.features
    sk.ensure_model(kv, shipped.features, "fs-other")  # same features, other parameters: fine
    other = FSModel()
    other.comparators = {**other.comparators, "name": {"name": "plain-name", "version": 1}}
    with pytest.raises(ModelError) as err:
        sk.ensure_model(kv, other.features, other.version)
    msg = str(err.value)
    assert "\n" not in msg and "name=plain-name@1" in msg and shipped.features in msg
    assert kv.get(sk.MODEL_KEY) == shipped.features
    sk.ensure_model(kv, other.features, other.version, force=True)  # rebuild --force
    assert kv.get(sk.MODEL_KEY) == other.features


# --- every identifying field --------------------------------------------------------------
@pytest.mark.parametrize("source,used", [("rental", True), ("residence", True),
                                         ("person", True), ("hotel", False), ("job", False)])
def test_the_top_level_address_is_evidence_where_it_is_the_persons(source: str,
                                                                   used: bool) -> None:
    rec = person_record({"source": source, "address": "杭州市西湖区科技路86号",
                         "person": {"name": "陈丽"}}, f"{source}:1", PSEUDO)
    assert rec.address == ("杭州市西湖区科技路86号" if used else None)


def test_an_address_inside_the_person_block_is_not_evidence() -> None:
    rec = person_record({"source": "person", "person": {"name": "陈丽", "address": "1 Main St"}},
                        "person:1", PSEUDO)
    assert rec.address is None


def test_a_shared_address_raises_the_weight_of_a_pair() -> None:
    base = {"name": "Anna Maria GARCIA", "birth_date": "1979-02-11", "sex": "F"}
    first = person_record({"source": "person", "person": base,
                           "address": "12 Main St Springfield 2000"}, "person:HR-1", PSEUDO)
    ident = Identity(person_id="P", anchor="rec:person:HR-1")
    ident.absorb(first)
    comp = FSComparator()
    rental = person_record({"source": "rental", "person": base,
                            "address": "Unit 3 12 Main Street Springfield"}, "rental:R-2",
                           PSEUDO)
    hotel = person_record({"source": "hotel", "person": base,
                           "address": "Unit 3 12 Main Street Springfield"}, "hotel:H-2", PSEUDO)
    with_addr, without = comp.compare(rental, ident), comp.compare(hotel, ident)
    assert {f.feature: f.level for f in with_addr.features}["address"] == "same_premises"
    assert "address" not in {f.feature for f in without.features}
    assert with_addr.total_weight == pytest.approx(
        without.total_weight + default_model().weight("address", "same_premises"))
    assert default_model().weight("address", "same_premises") > 0


def test_latin_name_helpers_reject_what_is_not_the_same_name() -> None:
    assert nickname_match(("BILL", "SMITH"), ("WILLIAM", "SMITH"))
    assert not nickname_match(("BILL", "SMITH"), ("ROBERT", "SMITH"))
    assert not nickname_match(("WILLIAM", "SMITH"), ("WILLIAM", "SMITH"))  # equal: not this
    assert initials_match(("J", "SMITH"), ("JOHN", "SMITH"))
    assert not initials_match(("J", "SMITH"), ("MARY", "SMITH"))
    assert not initials_match(("J", "K"), ("JOHN", "KING"))  # no full token in common
    assert not initials_match(("JOHN", "SMITH"), ("JANE", "SMITH"))
    assert variant_keys(("chang", "wei")) == {"wei zhang"}
    assert variant_keys(("wei", "zhang")) == frozenset()


def test_training_keeps_records_that_differ_only_in_their_address() -> None:
    """A copy of a person block counts once, but the same block at another address is another
    observation (the address is evidence), and the prior is a random pair's chance to match."""
    from matchers.em import train

    block = {"name": "Anna GARCIA", "birth_date": "1979-02-11"}
    records = [({"source": "person", "record_id": f"HR-{i}", "person": dict(block),
                 "address": addr}, f"person:HR-{i}")
               for i, addr in enumerate(["12 Main St Springfield", "12 Main St Springfield",
                                         "7 Oak Rd Shelbyville"])]
    records += [({"source": "person", "record_id": f"X-{i}",
                  "person": {"name": f"Person{i} OTHER{i}", "birth_date": f"19{50 + i}-01-01"}},
                 f"person:X-{i}") for i in range(20)]
    model = train(records, None, u_pairs=500, log=lambda *_: None)
    assert model.trained_on["person_blocks"] == 2 + 20
    n, blocked = model.trained_on["person_blocks"], model.trained["blocked_pairs"]
    share = model.trained["blocked_match_share"]
    assert blocked >= 1 and 0 < share < 1
    assert model.lam == pytest.approx(share * blocked / (n * (n - 1) / 2), rel=1e-4)
    assert model.lam < share
