"""NIR interchange: round trips, hand-built graphs against a hand-written Euler simulation, refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import snnjax.nn as snn

nir = pytest.importorskip("nir", reason="the nir extra is not installed")
import snnjax.nir  # noqa: E402

DT = 1e-3


def _model():
    rngs = nnx.Rngs(0)
    return snn.Sequential(
        nnx.Linear(4, 6, rngs=rngs),
        snn.LIF(6, beta=0.8, threshold=0.7, reset="zero", recurrent=True, rngs=rngs),
        nnx.Linear(6, 5, rngs=rngs),
        snn.IAF(5, reset="zero"),
        nnx.Linear(5, 4, use_bias=False, rngs=rngs),
        snn.CubaLIF(4, alpha=0.7, beta=0.85, threshold=0.3, reset="zero"),
        nnx.Linear(4, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=0.9),
    )


def test_a_round_trip_through_nir_and_a_file_gives_the_same_outputs(tmp_path):
    model = _model()
    graph = snnjax.nir.export(model, dt=DT)
    kinds = ["Affine", "NIRGraph", "Affine", "IF", "Linear", "CubaLIF", "Affine", "LI"]
    assert [type(graph.nodes[str(i)]).__name__ for i in range(8)] == kinds
    recurrent = graph.nodes["1"]  # the recurrent LIF: a subgraph feeding its spikes back through w_rec
    assert ("w_rec", "neuron") in recurrent.edges and type(recurrent.nodes["neuron"]).__name__ == "LIF"
    np.testing.assert_allclose(recurrent.nodes["neuron"].tau, DT / 0.2, rtol=1e-6)  # dt / (1 - beta)
    np.testing.assert_allclose(recurrent.nodes["neuron"].r, 1 / 0.2, rtol=1e-5)  # tau / dt: the input unscaled
    xs = jax.random.uniform(jax.random.key(0), (40, 3, 4)) * 2.0
    expected = model(xs)
    nir.write(tmp_path / "model.nir", graph)
    for loaded in (snnjax.nir.load(graph, dt=DT), snnjax.nir.load(tmp_path / "model.nir", dt=DT)):
        np.testing.assert_allclose(loaded(xs), expected, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(expected))) > 0.1  # the network is not silent


def _euler(graph, xs):
    """The NIR graph of Affine -> LIF -> Affine -> LI simulated by hand with forward Euler (NumPy)."""
    a1, lif, a2, li = (graph.nodes[k] for k in ("a1", "lif", "a2", "li"))
    v = np.zeros((xs.shape[1], lif.tau.shape[0]))
    y = np.zeros((xs.shape[1], li.tau.shape[0]))
    out = []
    for x in np.asarray(xs, np.float64):
        current = x @ a1.weight.T + a1.bias
        v = v + DT / lif.tau * (lif.v_leak - v + lif.r * current)
        z = (v > lif.v_threshold).astype(np.float64)
        v = np.where(z > 0, lif.v_reset, v)
        y = y + DT / li.tau * (li.v_leak - y + li.r * (z @ a2.weight.T + a2.bias))
        out.append(y)
    return np.stack(out)


def test_a_hand_built_graph_loads_into_the_same_dynamics():
    rng = np.random.default_rng(0)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a1": nir.Affine(weight=f32(rng.normal(size=(5, 3))), bias=f32(rng.normal(size=5) * 0.1)),
        # a gain R dt / tau of 0.6 and a leak voltage: folded into the Affine before it
        "lif": nir.LIF(
            tau=f32(np.linspace(5e-3, 2e-2, 5)),
            r=f32(0.6 * np.linspace(5e-3, 2e-2, 5) / DT),
            v_leak=f32(np.full(5, 0.2)),
            v_threshold=f32(np.full(5, 0.5)),
            v_reset=f32(np.zeros(5)),
        ),
        "a2": nir.Affine(weight=f32(rng.normal(size=(2, 5))), bias=f32(np.zeros(2))),
        "li": nir.LI(tau=f32(np.full(2, 1e-2)), r=f32(np.full(2, 3.0)), v_leak=f32(np.zeros(2))),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "a1"), ("a1", "lif"), ("lif", "a2"), ("a2", "li"), ("li", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    xs = jax.random.uniform(jax.random.key(1), (50, 4, 3)) * 2.0
    model = snnjax.nir.load(graph, dt=DT)
    np.testing.assert_allclose(model(xs), _euler(graph, xs), rtol=1e-4, atol=1e-4)


def test_unit_r_folds_the_gain_into_the_weights_and_one_value_per_layer_loads_for_all_neurons():
    """``unit_r``: every r is 1 and the graph, simulated by hand (forward Euler), is the model's dynamics; a node
    whose parameters are one value for the whole layer (as Norse writes them) loads with the layer's width."""
    rngs = nnx.Rngs(0)
    model = snn.Sequential(
        nnx.Linear(3, 5, rngs=rngs),
        snn.LIF(5, beta=0.9, reset="zero"),
        nnx.Linear(5, 2, rngs=rngs),
        snn.LeakyIntegrator(2),
    )
    exported = snnjax.nir.export(model, dt=DT, unit_r=True)
    graph = nir.NIRGraph(
        nodes={{"0": "a1", "1": "lif", "2": "a2", "3": "li"}.get(k, k): n for k, n in exported.nodes.items()},
        edges=[("input", "a1"), ("a1", "lif"), ("lif", "a2"), ("a2", "li"), ("li", "output")],
    )
    assert all(np.all(graph.nodes[k].r == 1) for k in ("lif", "li"))
    xs = jax.random.uniform(jax.random.key(1), (40, 2, 3)) * 2.0
    np.testing.assert_allclose(_euler(graph, xs), model(xs), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(snnjax.nir.load(exported, dt=DT)(xs), model(xs), rtol=1e-5, atol=1e-5)
    one = {k: getattr(graph.nodes["lif"], k)[:1] for k in ("tau", "r", "v_leak", "v_threshold", "v_reset")}
    scalar = nir.NIRGraph(nodes={**graph.nodes, "lif": nir.LIF(**one)}, edges=graph.edges, type_check=False)
    loaded = snnjax.nir.load(scalar, dt=DT)
    assert loaded.layers[1].features == 5
    np.testing.assert_allclose(loaded(xs), model(xs), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="export: unit_r folds layer 1's"):
        snnjax.nir.export(_model(), dt=DT, unit_r=True)  # its first layer is recurrent


def test_a_hand_built_current_based_graph_loads_into_the_same_dynamics():
    """NIR's CubaLIF by hand (the current updated before the membrane), any r and w_in."""
    rng = np.random.default_rng(1)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    weight, tau_syn, tau_mem = f32(rng.normal(size=(4, 3))), f32(np.full(4, 4e-3)), f32(np.linspace(5e-3, 1e-2, 4))
    r, w_in, threshold = f32(np.full(4, 20.0)), f32(np.linspace(0.5, 2.0, 4)), f32(np.full(4, 0.4))
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=weight),
        nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=f32(np.zeros(4)), v_threshold=threshold, w_in=w_in),
    )
    xs = np.asarray(jax.random.uniform(jax.random.key(2), (40, 2, 3)) * 2.0, np.float64)
    i, v, expected = np.zeros((2, 4)), np.zeros((2, 4)), []
    for x in xs:
        i = i + DT / tau_syn * (-i + w_in * (x @ weight.T))
        v = v + DT / tau_mem * (-v + r * i)
        z = (v > threshold).astype(np.float64)
        v = np.where(z > 0, 0.0, v)
        expected.append(z)
    spikes = snnjax.nir.load(graph, dt=DT)(jnp.asarray(xs, jnp.float32))
    assert np.mean(np.asarray(spikes) == np.stack(expected)) > 0.99 and np.sum(expected) > 5  # float32 vs float64


def test_what_nir_cannot_say_is_refused_naming_the_layer():
    rngs = nnx.Rngs(0)
    subtracting = snn.Sequential(nnx.Linear(2, 3, rngs=rngs), snn.LIF(3))
    with pytest.raises(ValueError, match=r"layer 1 \(LIF\) resets by subtraction.*reset='zero'"):
        snnjax.nir.export(subtracting)
    assert type(snnjax.nir.export(subtracting, approximate_reset=True).nodes["1"]).__name__ == "LIF"
    with pytest.raises(ValueError, match=r"layer 1 \(ALIF\) has no NIR counterpart"):
        snnjax.nir.export(snn.Sequential(nnx.Linear(2, 3, rngs=rngs), snn.ALIF(3)))
    with pytest.raises(ValueError, match="dt must be a positive number"):
        snnjax.nir.export(subtracting, dt=0)
    f32 = lambda *s: np.ones(s, np.float32)  # noqa: E731
    branching = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "a": nir.Linear(weight=f32(2, 2)),
            "b": nir.Linear(weight=f32(2, 2)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(ValueError, match="node 'input' has 2 successors"):
        snnjax.nir.load(branching)
    resetting = nir.NIRGraph.from_list(
        nir.Linear(weight=f32(2, 2)),
        nir.LIF(tau=f32(2) * 0.01, r=f32(2) * 10, v_leak=0 * f32(2), v_threshold=f32(2), v_reset=f32(2) * 0.5),
    )
    with pytest.raises(ValueError, match="resets to v_reset != 0"):
        snnjax.nir.load(resetting)
    nested = nir.NIRGraph.from_list(nir.Linear(weight=f32(2, 2)), nir.NIRGraph.from_list(nir.Linear(weight=f32(2, 2))))
    with pytest.raises(ValueError, match="is not a recurrent neuron layer"):
        snnjax.nir.load(nested)
    unknown = nir.NIRGraph.from_list(nir.Linear(weight=f32(2, 2)), nir.Threshold(threshold=f32(2)))
    with pytest.raises(ValueError, match=r"\(Threshold\) has no snnjax counterpart"):
        snnjax.nir.load(unknown)


def _conv_model():
    rngs = nnx.Rngs(1)
    return snn.Sequential(
        nnx.Conv(2, 4, (3, 3), rngs=rngs),  # 'SAME', stride 1
        snn.LIF(4, beta=0.8, threshold=0.5, reset="zero"),
        snn.AvgPool2d(2),
        nnx.Conv(4, 3, (3, 3), strides=(2, 2), padding="VALID", rngs=rngs),
        snn.IAF(3, threshold=0.4, reset="zero"),
        snn.Flatten(),
        nnx.Linear(12, 5, rngs=rngs),  # a 2 x 2 map of 3 channels: NIR orders it (C, H, W)
        snn.LeakyIntegrator(5, kappa=0.9),
    )


def test_convolution_pooling_and_flatten_round_trip_with_the_same_outputs(tmp_path):
    model = _conv_model()
    graph = snnjax.nir.export(model, dt=DT, input_shape=(12, 12, 2))
    kinds = ["Conv2d", "LIF", "AvgPool2d", "Conv2d", "IF", "Flatten", "Affine", "LI"]
    assert [type(graph.nodes[str(i)]).__name__ for i in range(8)] == kinds
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 12, 12)  # NIR's (C, H, W)
    assert graph.nodes["0"].padding == (1, 1) and graph.nodes["1"].tau.shape == (4, 12, 12)
    assert tuple(graph.nodes["5"].output_type["output"]) == (12,)
    kernel = np.asarray(model.layers[6].kernel[...])  # rows (h, w, c); NIR's columns (c, h, w)
    np.testing.assert_array_equal(graph.nodes["6"].weight[:, 1 * 4 + 0 * 2 + 1], kernel[0 * 6 + 1 * 3 + 1])
    xs = (jax.random.uniform(jax.random.key(0), (12, 2, 12, 12, 2)) < 0.6).astype(jnp.float32) * 2.0
    expected = model(xs)
    nir.write(tmp_path / "conv.nir", graph)
    for loaded in (snnjax.nir.load(graph, dt=DT), snnjax.nir.load(tmp_path / "conv.nir", dt=DT)):
        np.testing.assert_allclose(loaded(xs), expected, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(expected))) > 0.05  # not silent
    with pytest.raises(ValueError, match=r"starts with an nnx.Conv needs input_shape=\(H, W, C\)"):
        snnjax.nir.export(model)


def test_a_hand_built_conv_graph_flattened_channels_first_loads_into_the_same_outputs():
    """NIR's Conv2d (NCHW weights [C_out, C_in, kH, kW], symmetric padding), AvgPool2d and a channels-first Flatten
    before an Affine, against the same network written in NumPy on channels-first arrays."""
    rng = np.random.default_rng(2)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    w_conv, b_conv = f32(rng.normal(size=(3, 2, 3, 3))), f32(rng.normal(size=3) * 0.1)
    w_fc, b_fc = f32(rng.normal(size=(4, 3 * 3 * 3))), f32(np.zeros(4))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=w_conv, stride=1, padding=1, dilation=1, groups=1, bias=b_conv),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0),
        "fc": nir.Affine(weight=w_fc, bias=b_fc),
        "li": nir.LI(tau=f32(np.full(4, 1e-2)), r=f32(np.full(4, 10.0)), v_leak=f32(np.zeros(4))),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    order = ["input", "conv", "pool", "flat", "fc", "li", "output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))
    xs = np.asarray(jax.random.uniform(jax.random.key(3), (5, 2, 6, 6, 2)), np.float64)  # [T, B, H, W, C]
    chw = xs.transpose(0, 1, 4, 2, 3)  # [T, B, C, H, W]
    padded = np.pad(chw, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((5, 2, 3, 6, 6))
    for i in range(6):
        for j in range(6):
            conv[..., i, j] = np.einsum("tbcxy,ocxy->tbo", padded[..., i : i + 3, j : j + 3], w_conv)
    conv += b_conv[:, None, None]
    pooled = conv.reshape(5, 2, 3, 3, 2, 3, 2).mean(axis=(4, 6))
    current = pooled.reshape(5, 2, 27) @ w_fc.T + b_fc
    y, out = np.zeros((2, 4)), []
    for t in range(5):
        y = 0.9 * y + current[t]  # LI: dt / tau = 0.1, r dt / tau = 1
        out.append(y)
    model = snnjax.nir.load(graph, dt=DT)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv",
        "AvgPool2d",
        "Flatten",
        "Linear",
        "LeakyIntegrator",
    ]
    np.testing.assert_allclose(model(jnp.asarray(xs, jnp.float32)), np.stack(out), rtol=1e-4, atol=1e-4)
    per_position = nir.NIRGraph.from_list(
        nir.Conv2d(input_shape=(4, 4), weight=w_conv, stride=1, padding=1, dilation=1, groups=1, bias=b_conv),
        nir.IF(
            r=f32(np.arange(48).reshape(3, 4, 4)), v_threshold=f32(np.ones((3, 4, 4))), v_reset=f32(np.zeros((3, 4, 4)))
        ),
    )
    with pytest.raises(ValueError, match="r varying over positions within a channel"):
        snnjax.nir.load(per_position)
    flat = nir.Flatten(input_type={"input": np.array([2, 2, 1])}, start_dim=0)
    neuron_after = nir.NIRGraph.from_list(
        flat, nir.IF(r=f32(np.ones(4)), v_threshold=f32(np.arange(4)), v_reset=f32(np.zeros(4)))
    )
    with pytest.raises(ValueError, match="follows a Flatten of a feature map"):
        snnjax.nir.load(neuron_after)


def test_the_commands_convolutional_snn_exports_as_a_sequential():
    from snnjax.train import ConvSNN

    net = ConvSNN((8, 8, 1), (4, 8), 3, rngs=nnx.Rngs(0))
    graph = snnjax.nir.export(net.as_sequential(), dt=DT, input_shape=net.image, approximate_reset=True)
    kinds = ["Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LI"]
    assert [type(graph.nodes[str(i)]).__name__ for i in range(9)] == kinds
    assert tuple(graph.nodes["output"].output_type["output"]) == (3,)
