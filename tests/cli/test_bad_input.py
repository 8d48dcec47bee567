"""Bad input, one table: every case exits 2 with one line naming the flag, field or file, and
writes nothing to ``--out`` (the cases a careful user tried; docs/model.md "Workloads")."""

from __future__ import annotations

import pytest

from hybridsched.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from hybridsched.workloads.requests import load_gsm8k

    d = tmp_path_factory.mktemp("bad")
    load_gsm8k().iloc[:10].to_csv(d / "ten.csv", index=False)
    far = load_gsm8k().iloc[:3].assign(arrival_s=[0.0, 1.0, 1e300])
    far.to_csv(d / "far.csv", index=False)
    (d / "binary.yaml").write_bytes(bytes(range(128, 256)))
    (d / "broken.yaml").write_text("a: [1, 2\nb: 3\n")
    (d / "negative.yaml").write_text("num_requests: -5\n")
    (d / "window.yaml").write_text("window: '600:0'\nworkload: azure-conv\n")
    return d


SIM = ["simulate", "--workload", "{ten}"]
CASES = [
    # (arguments, what the one line must name)
    ([*SIM, "--rate-scale", "inf"], "--rate-scale"),
    ([*SIM, "--rate-scale", "nan"], "--rate-scale"),
    ([*SIM, "--rate-scale", "0"], "--rate-scale"),
    ([*SIM, "--arrivals", "poisson:1e-300"], "--arrivals"),
    (["simulate", "--workload", "{far}"], "arrival_s"),
    ([*SIM, "--window", "600:0"], "window"),
    ([*SIM, "--num-requests", "99"], "--num-requests"),
    ([*SIM, "--num-requests", "0"], "--num-requests"),
    ([*SIM, "--seed", "-1"], "--seed"),
    ([*SIM, "--arrival-seed", "-1"], "--arrival-seed"),
    ([*SIM, "--prediction-seed", "-1"], "--prediction-seed"),
    ([*SIM, "--tp", "0"], "--tp"),
    ([*SIM, "--clients", "x"], "--clients"),
    ([*SIM, "--watermark", "1.5"], "watermark"),
    ([*SIM, "--block-size", "0"], "--block-size"),
    ([*SIM, "--shared-prefix", "-3"], "--shared-prefix"),
    ([*SIM, "--policy", "nope"], "--policy"),
    ([*SIM, "--model", "no-such-model"], "--model"),
    (["sweep", "--grid", "{binary}"], "binary.yaml"),
    (["sweep", "--grid", "{broken}"], "broken.yaml"),
    (["sweep", "--grid", "{negative}"], "num_requests"),
    (["sweep", "--grid", "{window}"], "window"),
    (["capacity", "--tp", "0", "--slo-ttft", "1", "--slo-tpot", "0.1", "--rate", "1"], "--tp"),
    (
        ["capacity", "--num-requests", "0", "--slo-ttft", "1", "--slo-tpot", "0.1", "--rate", "1"],
        "--num-requests",
    ),
    (["validate", "--run", "{ten}"], "ten.csv"),
    (["validate", "--run", "no/such-run"], "--run"),
]


@pytest.mark.parametrize(
    ("args", "names"), CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else x
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(files, tmp_path, capsys, args, names):
    out = tmp_path / "out"
    argv = [a.format(**{p.stem: p for p in files.iterdir()}) for a in args] + ["--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert names in err, err
    assert not out.exists()
