"""The README's example, the main job and the benchmarks run as written (tiny sizes)."""

import contextlib
import json
import os
import re
import runpy
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _benchmarks_importable():
    """``benchmarks/`` on ``sys.path`` (the scripts import ``common`` and each other), then off it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _benchmark(name):
    """The globals of ``benchmarks/<name>.py``, run as a script module."""
    with _benchmarks_importable():
        return runpy.run_path(str(ROOT / "benchmarks" / f"{name}.py"))


def _run_benchmark(name, argv):
    """``main(argv)`` of ``benchmarks/<name>.py``, with ``benchmarks/`` importable while it runs."""
    with _benchmarks_importable():
        return runpy.run_path(str(ROOT / "benchmarks" / f"{name}.py"))["main"](argv)


def test_readme_commands_and_example():
    text = (ROOT / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(commands) == 2 and commands[0].endswith("snnjax demo") and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert np.isfinite(float(namespace["loss"]))
    assert namespace["v"].shape == (50, 8, 3)


def test_example_loop_runs_and_learns():
    module = runpy.run_path(str(ROOT / "examples" / "train_randman.py"))
    accuracy = module["main"](
        [
            "--epochs",
            "4",
            "--classes",
            "3",
            "--samples-per-class",
            "60",
            "--hidden",
            "32",
            "--batch-size",
            "48",
            "--lr",
            "1e-2",
        ]
    )
    assert accuracy > 0.5  # chance is 1/3


def test_example_loop_learns_with_activity_forward_gradient():
    module = runpy.run_path(str(ROOT / "examples" / "train_randman.py"))
    argv = ["--rule", "fg-a", "--epochs", "20", "--classes", "3", "--samples-per-class", "500", "--lr", "1e-3"]
    assert module["main"](argv) > 0.6  # chance is 1/3; 0.77 when measured


def test_open_neuromorphic_benchmark_smoke():
    payload = _run_benchmark(
        "open_neuromorphic",
        ["--sizes", "16", "--steps", "8", "--batch", "2", "--repeats", "1", "--no-write", "--no-tune-allocator"],
    )
    rows = payload["results"]["16"]
    assert {
        "forward/matmuls",
        "forward+backward/lif-inject",
        "forward+backward/nnx-Sequential",
        "forward+backward/by-hand",
    } <= set(rows)
    assert all(r["median_s"] > 0 for r in rows.values())


def test_open_neuromorphic_loop_by_hand_matches_snnjax():
    """The benchmark's hand-written reference computes snnjax's spikes and gradients."""
    import jax

    import snnjax

    module = _benchmark("open_neuromorphic")
    currents = 0.8 * jax.random.normal(jax.random.key(3), (30, 4, 8)) + 0.3
    g_z = jax.random.normal(jax.random.key(4), currents.shape)

    def ours(c):
        return snnjax.run(snnjax.lif(0.9), c)[1]

    z_hand, vjp_hand = jax.vjp(module["lif_by_hand"], currents)
    z_ours, vjp_ours = jax.vjp(ours, currents)
    assert 0 < float(z_ours.mean()) < 1
    np.testing.assert_array_equal(z_hand, z_ours)
    np.testing.assert_allclose(vjp_hand(g_z)[0], vjp_ours(g_z)[0], rtol=1e-5, atol=1e-6)


def test_side_by_side_timing_warms_up_past_recompiles_and_counts_the_rest():
    import jax
    import jax.numpy as jnp

    with _benchmarks_importable():
        import common
    double = jax.jit(lambda x: 2 * x)
    box = [jnp.full((3,), 1.0)]  # weakly typed: the second call compiles again

    def update():
        box[0] = double(box[0]).astype(jnp.float32)
        return box[0]

    sizes = iter(range(1, 100))
    timings = common.time_side_by_side(
        {"update": update, "new shape": lambda: double(jnp.zeros(next(sizes), jnp.float32))}, repeats=2, warmup=1
    )
    assert timings["update"]["compiles_while_timed"] == 0
    assert timings["new shape"]["compiles_while_timed"] >= 2


def test_forward_gradient_memory_benchmark_smoke():
    payload = _run_benchmark(
        "forward_gradient_memory", ["--steps", "20", "80", "--batch", "2", "--repeats", "1", "--no-write"]
    )
    assert payload["memory_growth"]["FG-W K=1"] < 1.5 < payload["memory_growth"]["bptt"]


def test_sharding_benchmark_smoke():
    payload = _run_benchmark(
        "sharding_throughput",
        [
            "--devices",
            "1",
            "2",
            "--batch",
            "8",
            "--steps",
            "5",
            "--hidden",
            "8",
            "--directions",
            "2",
            "--repeats",
            "1",
            "--no-write",
        ],
    )
    assert set(payload["results"]) == {f"{rule}/{n}" for rule in ("bptt", "fg-w", "fg-a") for n in (1, 2)}
    assert (
        payload["results"]["bptt/1"]["collective_bytes"]["total"]
        == 0
        < payload["results"]["bptt/2"]["collective_bytes"]["total"]
    )
    assert payload["shared_seed_fg_w"]["bytes"]["2"]["derivatives"] == 4 * 3  # K = 2 derivatives and the loss


@pytest.mark.parametrize("method", ["inject", "custom_jvp"])
def test_fgi_plain_scan_computes_the_snnjax_network(method):
    """The FGI table's reference scan, written without snnjax, has snnjax's loss and gradient."""
    import jax

    module = _benchmark("fgi_table")
    params = module["init_params"](jax.random.key(0), 5, 16)
    params["w_rec"] = 3 * params["w_rec"]
    xs = 4 * jax.random.uniform(jax.random.key(1), (12, 3, 5))
    labels = np.arange(3) % 10
    ours = jax.value_and_grad(module["snnjax_loss"](method, bptt=method == "inject"))(params, xs, labels)
    plain = jax.value_and_grad(module["plain_scan_loss"])(params, xs, labels)
    np.testing.assert_allclose(plain[0], ours[0], rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(plain[1][name], ours[1][name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert float(np.abs(ours[1]["w_rec"]).max()) > 0  # spikes reached the recurrent weights


def test_fashion_mnist_benchmark_smoke(tmp_path):
    """On a problem learnt in a few steps (test_datasets.write_learnable_idx), BP and the local-loss
    rules must reach a test error well below chance's 90 %."""
    from test_datasets import write_learnable_idx

    write_learnable_idx(tmp_path)
    argv = ["--directory", str(tmp_path), "--epochs", "1", "--lrs", "3e-3", "--batch", "32", "--no-write"]
    payload = _run_benchmark("forward_gradient_fashion_mnist", argv + ["--models", "mlp"])
    results = payload["results"]["mlp"]
    assert set(results) == {"BP", "FG-W", "FG-A", "LG-FG-A", "LG-BP"}
    assert results["BP"]["test_error"] < 20 and results["LG-BP"]["test_error"] < 30, results
    payload = _run_benchmark("forward_gradient_fashion_mnist", argv + ["--models", "lif", "--rules", "LG-FG-A"])
    assert payload["results"]["lif"]["LG-FG-A"]["test_error"] < 80, payload["results"]


def test_local_mixer_benchmark_and_variance_smoke(tmp_path, capsys):
    """The Table 3 grid on a problem learnt in a few steps: BP and LG-FG-A (2 directions, BP ignores
    them) well below chance's 90 %, the report's table from the runs; the variance benchmark draws
    both weightings per G."""
    from test_datasets import write_learnable_idx

    write_learnable_idx(tmp_path)
    argv = ["--directory", str(tmp_path), "--configs", "m1", "--methods", "BP", "LG-FG-A", "--seeds", "0"]
    argv += ["--epochs", "2", "--batch", "32", "--lrs", "3e-3", "--no-write"]
    payload = _run_benchmark("local_mixer_fashion_mnist", argv + ["--directions", "2"])
    runs = {r["method"]: r for r in payload["runs"].values()}
    assert "directions" not in runs["BP"] and runs["LG-FG-A"]["directions"] == 2, payload["runs"].keys()
    assert runs["BP"]["curve"][-1]["test_error"] < 30 and runs["LG-FG-A"]["curve"][-1]["test_error"] < 60, runs
    table = _benchmark("local_mixer_fashion_mnist")["report"](payload)
    assert "| m1 | BP | 2 | 0.003 | 1 |" in table and "| m1 | LG-FG-A K=2 | 2 | 0.003 | 1 |" in table, table
    with pytest.raises(SystemExit, match="2"):  # no method named takes the option: one line, exit 2
        _run_benchmark("local_mixer_fashion_mnist", ["--methods", "BP", "FA", "--directions", "2", "--no-write"])
    assert "--directions 2 is for FG-W, FG-A, LG-FG-W, LG-FG-A; --methods names none" in capsys.readouterr().err
    argv = ["--directory", str(tmp_path), "--groups", "1", "4", "--draws", "3", "--batch", "6", "--no-write"]
    payload = _run_benchmark("local_loss_variance", argv + ["--channels", "16"])
    assert set(payload["results"]) == {"1", "4"} and set(payload["results"]["4"]) == {"grouped", "summed"}


def test_fashion_mnist_benchmark_local_losses_cut_the_blocks():
    """LG-BP: the first block learns from its own head's loss only (rules.block is the cut)."""
    import jax
    import jax.numpy as jnp

    module = _benchmark("forward_gradient_fashion_mnist")
    params = module["init_params"](jax.random.key(0))
    x, y = jax.random.uniform(jax.random.key(1), (4, 784)), jnp.arange(4)
    loss_fn = module["make_loss"]("mlp", True)
    (loss, _), grads = module["make_rule"]("LG-BP", "mlp")(params, x, y)
    head, rest = loss_fn(params, x, y)[0]
    np.testing.assert_allclose(loss, head + rest, rtol=1e-6)
    np.testing.assert_allclose(grads["l1"]["w"], jax.grad(lambda p: loss_fn(p, x, y)[0][0])(params)["l1"]["w"])
    assert float(jnp.abs(grads["l1"]["w"]).max()) > 0


SCRIPTS = ["examples/train_randman.py"] + [
    str(p.relative_to(ROOT)) for p in sorted((ROOT / "benchmarks").glob("*.py")) if p.name != "common.py"
]


def test_cli_scripts_parse_help(capsys, monkeypatch):
    """Each script run as ``__main__`` with ``--help`` (in this process: one import of JAX for all of
    them): its imports work, it prints its usage and exits 0. Each starts from this process's
    ``sys.path``, modules and environment, and leaves them as they were."""
    path, modules = list(sys.path), set(sys.modules)  # libraries a script imports first stay (JAX's registries)
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "1")  # what peers.py and fgi_table.py set by default
    environ = dict(os.environ)
    for script in SCRIPTS:
        monkeypatch.setattr(sys, "path", list(path))  # the script puts its own folder first
        monkeypatch.setattr(sys, "argv", [str(ROOT / script), "--help"])
        try:
            with pytest.raises(SystemExit) as exit_:
                runpy.run_path(str(ROOT / script), run_name="__main__")
        finally:
            for name in set(sys.modules) - modules:  # the scripts' own modules (common.py), imported afresh
                if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(ROOT / "benchmarks")):
                    del sys.modules[name]
        assert exit_.value.code in (0, None), script
        assert "usage" in capsys.readouterr().out, script
        assert dict(os.environ) == environ, script


NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def _code_cells(path):
    import json

    return ["".join(c["source"]).strip() for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_run_top_to_bottom(name, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: plt.close("all"))
    exec(compile("\n".join(_code_cells(ROOT / "notebooks" / name)), name, "exec"), {})
    if name.startswith("01_"):
        assert "jvp fails" in capsys.readouterr().out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_paired_with_python_copies(name):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed")
    script = jupytext.read(ROOT / "notebooks" / name.replace(".ipynb", ".py"))
    assert ["".join(c["source"]).strip() for c in script["cells"] if c["cell_type"] == "code"] == _code_cells(
        ROOT / "notebooks" / name
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_with_their_outputs_and_rendered(name):
    """Built by ``notebooks/build.py``: every cell ran, every plot is there and in the gallery, and
    the docs site lists the notebook under Tutorials."""
    import json

    path = ROOT / "notebooks" / name
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{name} has cells that did not run: notebooks/build.py"
    images = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
    shows = ["".join(c["source"]).count("plt.show()") for c in code]
    assert len(images) == sum(shows) and any(c["outputs"] for c in code)
    stem = name.removesuffix(".ipynb")
    assert len(list((ROOT / "docs" / "assets" / "gallery").glob(f"{stem}-*.png"))) == len(images)
    assert path.stat().st_size < 300_000  # modest pictures, no large arrays printed
    assert (ROOT / "docs" / "tutorials" / name).resolve() == path.resolve()
    assert f"tutorials/{name}" in (ROOT / "mkdocs.yml").read_text()


def test_train_runs_benchmark_smoke():
    """Two epochs of the demo's recurrent network on 1024 Randman samples: well above chance (1/10)."""
    payload = _run_benchmark(
        "train_runs",
        ["--dataset", "randman", "--encodings", "none", "--epochs", "2", "--train-size", "1024", "--no-write"],
    )
    run = payload["runs"]["none"]
    assert run["model"] == "rsnn 128" and len(run["history"]) == 2
    assert run["test_accuracy"] > 0.4, run["history"]


def test_feedback_alignment_benchmark_smoke(tmp_path):
    """On a problem learnt in a few steps (test_datasets.write_learnable_idx), FA and FDFA must reach a
    test accuracy well above chance (1/10)."""
    from test_datasets import write_learnable_idx

    write_learnable_idx(tmp_path)
    argv = ["--data-dir", str(tmp_path), "--epochs", "3", "--lrs", "1e-2", "--every", "4", "--steps", "3", "--no-write"]
    payload = _run_benchmark("feedback_alignment_fashion_mnist", argv + ["--models", "mlp", "--rules", "fa", "fdfa"])
    runs = payload["results"]["mlp"]
    assert len(runs["fdfa lr=0.01"]["angles"][0]["angles"]) == 2
    assert runs["fa lr=0.01"]["test_accuracy"] > 0.5 and runs["fdfa lr=0.01"]["test_accuracy"] > 0.5, runs
    payload = _run_benchmark("feedback_alignment_fashion_mnist", argv + ["--models", "snn", "--rules", "dfa"])
    cosines = payload["results"]["snn"]["dfa lr=0.01"]["cosine_with_bp"]
    assert list(cosines) == ["layers.0.kernel", "layers.2.kernel", "layers.4.kernel", "layer mean"]


@pytest.mark.parametrize("model", ["mlp", "snn"])
def test_feedback_alignment_benchmark_jacobian_network_is_the_model(model):
    """The network the benchmark differentiates for its Jacobians is the trained model, cut at
    the output layer's pre-activation (where DFA takes the error)."""
    import jax
    from flax import nnx

    from snnjax.train import build_model

    module = _benchmark("feedback_alignment_fashion_mnist")
    spiking = model == "snn"
    net = build_model(model, 6, 3, (5, 4), seed=0)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    shape = (7, 2, 6) if spiking else (2, 6)
    x = (jax.random.uniform(jax.random.key(0), shape) < 0.5).astype(np.float32) * 3
    zeros = [np.zeros((7, 1, 5) if spiking else (1, 5)), np.zeros((7, 1, 4) if spiking else (1, 4))]
    output = module["output_of_hidden"](graphdef, rest, spiking)(params, x, zeros)
    readout = net.layers[-1].run(output)[1] if spiking else output
    np.testing.assert_allclose(readout, net(x), rtol=1e-6, atol=1e-6)
    jacobians = module["jacobians"](
        module["output_of_hidden"](graphdef, rest, spiking), params, x, [(*shape[:-1], 5), (*shape[:-1], 4)], spiking
    )
    assert [j.shape for j in jacobians] == [(5, 3), (4, 3)]
    np.testing.assert_allclose(jacobians[1], net.layers[-2 if spiking else -1].kernel[...], rtol=1e-5, atol=1e-6)


TINY_SFDFA = ["--train-size", "32", "--test-size", "16", "--batch", "8", "--hidden", "12", "10", "--dt", "5e-3"]


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """IDX files in Fashion-MNIST's layout (the Debian package may be missing)."""
    from test_datasets import write_learnable_idx

    folder = tmp_path_factory.mktemp("fashion")
    write_learnable_idx(folder, sizes=(("train", 32), ("t10k", 16)))
    return str(folder)


def test_temporal_tasks_benchmark_smoke(tiny_fashion):
    """Both tasks (Randman, sequential Fashion-MNIST through a .npz file), an online rule on the recurrent network
    and online DFA on the feed-forward one: every run recorded, and the summary over seeds."""
    argv = ["--rules", "eprop", "online-dfa", "--neurons", "lif", "--seeds", "0", "--epochs", "1", "--no-write"]
    argv += ["--data-dir", tiny_fashion, "--train-size", "32", "--test-size", "16", "--batch-size", "8"]
    result = _run_benchmark("temporal_tasks", [*argv, "--randman-steps", "20", "--randman-samples", "4"])
    assert set(result["runs"]) == {f"{t}/lif/{r}/0" for t in ("randman", "seq-fmnist") for r in ("eprop", "online-dfa")}
    assert set(result["summary"]) == {"randman/lif", "seq-fmnist/lif"}
    assert all(len(run["history"]) == 1 for run in result["runs"].values())


def test_nir_interchange_with_snntorch_and_norse_agrees_where_their_conventions_do():
    """Runs where the peers are installed (not in CI): spikes agree exactly in every direction whose conventions
    line up (reset to zero; Norse's tau corrected; r = 1 for Norse), and the known differences show."""
    for module in ("torch", "snntorch", "norse", "nirtorch"):
        pytest.importorskip(module, reason="the peers are not installed")
    results = _run_benchmark("nir_interchange", ["--no-write"])["results"]
    exact = ["snnTorch -> snnjax (reset zero)", "snnjax -> snnTorch", "Norse -> snnjax (tau corrected)"]
    exact += ["snnjax -> Norse (unit_r)"]
    for name in exact:
        assert all(layer["agree"] == 1.0 and layer["spikes"][0] > 0 for layer in results[name].values()), name
    assert results["snnTorch -> snnjax (reset subtract)"]["layer 0"]["agree"] < 1.0  # NIR cannot say subtract
    assert "tau = 1e-05 s <= dt" in results["Norse -> snnjax"]["error"]  # Norse writes dt / tau_mem_inv
    assert results["snnjax -> Norse"]["output layer"]["spikes"][0] == 0  # Norse ignores r != 1


def _json_of(part):
    """The JSON result a GPU-suite part wrote."""
    return json.loads(next(Path(f) for f in part["files"] if f.endswith(".json")).read_text())


def test_gpu_suite_smoke_runs_every_part_and_summarises(tiny_fashion, tmp_path):
    """`python benchmarks/gpu_suite.py --smoke`: each part as its own process at tiny sizes, results in a
    directory of its own (never benchmarks/results), one summary, the files packed where asked; and what
    the peers' and the FGI table's smoke runs measured (every variant, or the peer reported as skipped)."""
    out = tmp_path / "out"
    summary = _run_benchmark(
        "gpu_suite", ["--smoke", "--data-dir", tiny_fashion, "--results", str(tmp_path / "res"), "--copy-to", str(out)]
    )
    parts = summary["parts"]
    assert list(parts) == ["peers", "fgi", "seeds", "sfdfa", "parallel"]
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part)
        assert part["files"] and all(str(tmp_path / "res") in f for f in part["files"]), (name, part["files"])
        assert part["headline"] and "unreadable" not in part["headline"], (name, part["headline"])
    sfdfa = _json_of(parts["sfdfa"])
    assert list(sfdfa["summary"]) == ["sfdfa", "sfdfa-released", "rate-only", "dfa", "bp"]
    for name, per_seed in sfdfa["results"].items():
        assert per_seed["status"] == "finished" and len(per_seed["0"]["angles"]) == (0 if name == "bp" else 1)
    rates = [sfdfa["results"]["dfa"][s]["history"][0]["hidden_rates"] for s in ("0", "1")]
    assert rates[0] != rates[1]  # each seed its own network
    peers = _json_of(parts["peers"])
    rows = peers["results"]["32"]
    assert {"forward/lif-inject", "forward+backward/matmuls", "forward+backward/nnx-Sequential"} <= set(rows)
    for peer in ("spyx", "snntorch", "norse"):  # each is either timed or reported as skipped
        assert (peer in peers["skipped"]) != any(name.endswith("/" + peer) for name in rows)
    fgi = _json_of(parts["fgi"])["results"]["8"]
    methods = ("inject", "bypass", "custom_jvp", "custom_vjp", "inject-no-remat", "inject-run_bptt", "inject-chain")
    names = [f"snnjax-{m}" for m in (*methods, "custom_jvp-chain")] + ["jax-plain-scan"]
    assert {f"{mode}/{name}" for mode in ("train", "infer") for name in names} <= set(fgi["timings"])
    assert set(fgi["train_temp_bytes"]) == set(names) and all(m > 0 for m in fgi["train_temp_bytes"].values())
    parallel = _json_of(parts["parallel"])
    names = {n.split("/", 1)[1] for n in parallel["results"]["32"]}
    assert {"lif (sequential)", "parallel_lif", "sliding_psn", "parallel_lif stepped"} <= names
    with tarfile.open(out / "gpu_suite_results.tar.gz") as tar:
        assert set(tar.getnames()) >= {Path(f).name for p in parts.values() for f in p["files"]}


def test_sfdfa_benchmark_continues_a_run_step_for_step_and_refuses_another_runs_checkpoint(tiny_fashion, tmp_path):
    """Stopped inside an epoch, at an epoch's end and by the clock, then continued: the same run as one
    made at once (4 steps per epoch, 2 epochs); a finished run stays finished; other settings are refused."""
    base = [*TINY_SFDFA, "--data-dir", tiny_fashion, "--epochs", "2", "--seeds", "3", "--rules", "sfdfa-released"]
    base += ["--every", "1", "--no-write"]

    def bench(*extra):
        return _run_benchmark("sfdfa_fashion_mnist", [*base, *extra])["results"]["sfdfa-released"]

    whole = bench()
    ckpt = ["--checkpoint", str(tmp_path)]
    stops = [bench(*ckpt, "--stop-after-steps", "4"), bench(*ckpt, "--stop-after-steps", "1")]
    stops.append(bench(*ckpt, "--budget-s", "1e-9"))  # the clock: one step, then out of time
    assert [(r["status"], r["epochs_done"], r["step"]) for r in stops] == [
        ("out of budget", 1, 0),  # epoch 1 finished (and evaluated), stopped before epoch 2
        ("out of budget", 1, 1),
        ("out of budget", 1, 2),
    ]
    resumed = bench(*ckpt)
    assert resumed["status"] == "finished" and len(resumed["3"]["history"]) == len(whole["3"]["history"]) == 2
    for a, b in zip(resumed["3"]["history"], whole["3"]["history"]):
        assert (a["test_accuracy"], a["train_loss"], a["hidden_rates"]) == (
            b["test_accuracy"],
            b["train_loss"],
            b["hidden_rates"],
        )
    assert resumed["3"]["angles"] == whole["3"]["angles"] and len(whole["3"]["angles"]) == 8
    again = bench(*ckpt)  # finished: nothing more is trained, nothing lost
    assert again["3"]["history"] == resumed["3"]["history"] and again["status"] == "finished"
    with pytest.raises(SystemExit, match="--checkpoint: .* was made with other settings \\(lr\\)"):
        bench(*ckpt, "--lr", "1e-3")


def test_sfdfa_memory_benchmark_smoke():
    payload = _run_benchmark("sfdfa_memory", ["--steps", "20", "80", "--batch", "2", "--repeats", "1", "--no-write"])
    growth = payload["memory_growth"]
    assert growth["sfdfa online"] < 1.1 and growth["dfa online"] < 1.1 and growth["bp through spike times"] > 2


def test_recurrent_online_benchmark_smoke():
    payload = _run_benchmark(
        "recurrent_online", ["--steps", "20", "80", "--batch", "2", "--repeats", "1", "--no-write"]
    )
    growth, cosine = payload["memory_growth"], payload["cosine_to_exact"]
    assert growth["rtrl"] < 1.1 and growth["tbptt k=16"] < 1.1 and growth["e-prop"] < 1.1 and growth["bptt"] > 2
    assert cosine["alif RTRL"]["layer mean"] > 0.9999  # exact
    assert 0.9 < cosine["alif e-prop (symmetric)"]["layer mean"] < 0.9999
    assert cosine["alif TBPTT(k=1)"]["recurrent kernel"] < cosine["alif TBPTT(k=32)"]["recurrent kernel"] < 1


def test_plot_over_steps_writes_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    with _benchmarks_importable():
        import common
    results = {str(t): {"forward": {"temp_bytes": 1024 * t, "median_s": 1e-4 * t}} for t in (10, 100)}
    common.plot_over_steps(results, tmp_path / "plot.png", "title")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_online_memory_benchmark_smoke():
    payload = _run_benchmark("online_memory", ["--steps", "10", "40", "--batch", "2", "--repeats", "1", "--no-write"])
    assert payload["memory_growth"]["dfa online"] < 1.2 < payload["memory_growth"]["bptt"]
    assert payload["memory_growth"]["fg-a online"] < 1.2 < payload["memory_growth"]["fg-a offline"]


def test_remat_benchmark_smoke():
    payload = _run_benchmark(
        "remat",
        ["--steps", "6", "--batch", "2", "--neurons", "8", "--repeats", "1", "--no-write", "--no-tune-allocator"],
    )
    assert set(payload["results"]) == {"lif", "lif-recurrent", "cuba_lif", "alif-fgi", "alif-fgi-recurrent"}
    assert all(
        r["remat_ms"] > 0 and r["no_remat_ms"] > 0 and r["run_bptt_ms"] > 0 and r["run_bptt_temp_mib"] > 0
        for r in payload["results"].values()
    )
