"""The ``snnjax`` command: ``snnjax demo``, ``snnjax train ...``, ``snnjax download NAME``.

Every error is one line, ``snnjax: error: ...``, saying what to change (exit status 2; a
diverged run exits with 1). The one exception lists checkpoints: when none of a run's
checkpoints loads, ``--resume`` stops with one line for each, saying why.
"""

from __future__ import annotations

import argparse
import sys

from snnjax.datasets.batching import ENCODINGS
from snnjax.train.config import DEFAULTS, MODELS, NEURONS, READOUTS, RULE_HELP, RULES, SPIKE_TIME_ENCODING

__all__ = ["main"]

_DATASETS = tuple(DEFAULTS)
_DEFAULTS_TEXT = "\n".join(
    f"  {name:14s} model {d['model']}, hidden {' '.join(map(str, d['hidden']))}, steps {d['steps']}, encoding "
    f"{d['encoding']}, "
    f"epochs {d['epochs']}, lr {d['lr']:g}, batch {d['batch_size']}"
    for name, d in DEFAULTS.items()
)


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _train_arguments(parser: argparse.ArgumentParser, demo: bool) -> None:
    if not demo:
        parser.add_argument(
            "--dataset",
            default="randman",
            metavar="NAME",
            help=(
                f"the data set: {', '.join(_DATASETS)} (default: randman, generated, no download), or a .npz file of "
                "x_train, y_train, x_test, y_test (path/to/file.npz, or NAME with --data-dir DIR for DIR/NAME.npz)"
            ),
        )
        parser.add_argument(
            "--model",
            choices=MODELS,
            help=(
                "mlp (ReLU, images, no time), snn (feed-forward LIF), rsnn (recurrent LIF), conv (convolutional "
                "LIF, images; --hidden gives its channels), mixer / spiking-mixer (Ren et al.'s LocalMixer, images; "
                "--hidden gives one channel count per block), spike-time (Bacho & Chu's exact-time network: rules "
                "sfdfa, dfa, bptt; --steps gives its grid steps over 200 ms); default per dataset and rule"
            ),
        )
        parser.add_argument(
            "--rule",
            choices=RULES,
            default="bptt",
            help="learning rule; " + "; ".join(f"{k}: {v.replace('`', '')}" for k, v in RULE_HELP.items()),
        )
        parser.add_argument("--hidden", type=int, nargs="+", help="hidden layer sizes, e.g. --hidden 400 400")
        parser.add_argument("--window", type=int, default=16, help="tbptt: the truncation window in steps (default 16)")
        parser.add_argument(
            "--neuron", choices=NEURONS, default="lif", help="snn, rsnn: the hidden neurons, lif or alif (default lif)"
        )
        parser.add_argument(
            "--readout",
            choices=READOUTS,
            help=(
                "spiking models: how the readout over time is trained and classified: max (default), mean, last "
                "(the loss on the last step) or per-step (a loss at every step; the online rules' default; they take "
                "per-step or last)"
            ),
        )
        parser.add_argument(
            "--directions", type=int, default=1, help="forward-gradient rules: directions K per step (default 1)"
        )
        parser.add_argument("--groups", type=int, default=16, help="mixers: channel groups G (default 16)")
        parser.add_argument(
            "--patches", type=int, default=1, help="mixers: patches per image side, P = patches^2 tokens (default 1)"
        )
        parser.add_argument(
            "--steps",
            type=int,
            help="time steps T (image encoding length, SHD bins, Randman raster length; spike-time: its grid steps)",
        )
        parser.add_argument(
            "--encoding",
            choices=(*ENCODINGS, SPIKE_TIME_ENCODING),
            help="how images become spikes; none for mlp and the mixers, ttfs (time to first spike) for spike-time",
        )
        parser.add_argument("--batch-size", type=int, help="examples per step")
        parser.add_argument("--lr", type=float, help="Adam learning rate")
        parser.add_argument(
            "--data-dir",
            help="folder with the data files (IDX, HDF5) or tfds data_dir; else $SNNJAX_DATA and known places",
        )
        parser.add_argument(
            "--data-option",
            type=_option,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="passed to the loader, e.g. num_classes=3 or samples_per_class=200 (Randman), max_time=1.0 (SHD)",
        )
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in --out from its last complete checkpoint"
        )
        parser.add_argument("--no-checkpoints", action="store_true", help="do not write a checkpoint after each epoch")
        parser.add_argument(
            "--devices",
            type=int,
            help=(
                "train data-parallel on N devices, the batch split over them (on a CPU-only machine, N simulated CPU "
                "devices)"
            ),
        )
        parser.add_argument(
            "--shard-params-above",
            type=int,
            metavar="SIZE",
            help=(
                "with --devices: split parameters of at least SIZE elements over the devices instead of replicating "
                "them"
            ),
        )
        hosts = parser.add_argument_group(
            "several hosts", "run the same command on every host; --devices counts every host's devices"
        )
        hosts.add_argument(
            "--distributed",
            action="store_true",
            help="join a multi-host run found by JAX itself (SLURM, Open MPI, Cloud TPU)",
        )
        hosts.add_argument(
            "--coordinator",
            metavar="HOST:PORT",
            help="process 0's address (or set JAX_COORDINATOR_ADDRESS); with --num-processes and --process-id",
        )
        hosts.add_argument("--num-processes", type=int, help="how many processes take part")
        hosts.add_argument("--process-id", type=int, help="this process's index, 0 to N-1")
    parser.add_argument("--epochs", type=int, help="passes over the training set (default per dataset)")
    parser.add_argument(
        "--seed", type=int, default=0, help="fixes weights, data order and every random draw: same seed, same numbers"
    )
    parser.add_argument(
        "--out",
        help=(
            "output folder for metrics.jsonl, checkpoints and plots (default runs/<dataset>-<model>-<rule>, runs/demo)"
        ),
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "replace the run already in --out (its metrics, checkpoints and plots); without it such a folder is "
            "refused" + ("; the demo replaces its own default runs/demo, saying so" if demo else "")
        ),
    )
    parser.add_argument("--train-size", type=int, help="use only the first N training examples")
    parser.add_argument("--test-size", type=int, help="use only the first N test examples")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    parser.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help=(
            "leave glibc's malloc as it is (by default freed host memory is kept for reuse: snnjax.tune_host_allocator)"
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnjax",
        description="Train spiking networks with snnjax's learning rules.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,download}")
    demo = commands.add_parser(
        "demo",
        help="train a recurrent spiking network on Randman (no download, about 2 minutes on a laptop CPU)",
        description=(
            "Train a 100-128-10 recurrent LIF network with BPTT on Randman (generated on the spot), print the "
            "test accuracy and write plots to runs/demo."
        ),
    )
    _train_arguments(demo, demo=True)
    train = commands.add_parser(
        "train",
        help="train a network on a data set with a learning rule",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a network, evaluate it on the test split after every epoch, write metrics.jsonl, "
            "checkpoints and plots."
        ),
        epilog="defaults per dataset:\n" + _DEFAULTS_TEXT,
    )
    _train_arguments(train, demo=False)
    download = commands.add_parser(
        "download",
        help=(
            "fetch a data set on a machine with internet (shd and ssc; nmnist, dvs_gesture and cifar10_dvs through "
            "tonic; or a tensorflow-datasets image set)"
        ),
    )
    download.add_argument("name", choices=[d for d in _DATASETS if d != "randman"])
    download.add_argument(
        "--directory",
        help="where to put it (SHD, SSC: default $SNNJAX_DATA/<name>; event sets: $SNNJAX_DATA; tfds: its data_dir)",
    )
    return parser


def _config(args: argparse.Namespace):
    from snnjax.train.config import Config

    common = dict(
        epochs=args.epochs,
        seed=args.seed,
        train_size=args.train_size,
        test_size=args.test_size,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )
    if args.command == "demo":
        overwrite = args.overwrite or args.out is None  # a rerun of the demo replaces the last demo
        return Config(
            dataset="randman",
            out=args.out or "runs/demo",
            resume=False,
            overwrite=overwrite,
            checkpoints=False,
            **common,
        )
    return Config(
        dataset=args.dataset,
        model=args.model,
        rule=args.rule,
        hidden=tuple(args.hidden) if args.hidden else None,
        steps=args.steps,
        encoding=args.encoding,
        batch_size=args.batch_size,
        lr=args.lr,
        out=args.out,
        data_dir=args.data_dir,
        data_options=dict(args.data_option),
        resume=args.resume,
        overwrite=args.overwrite,
        checkpoints=not args.no_checkpoints,
        devices=args.devices,
        shard_params_above=args.shard_params_above,
        window=args.window,
        readout=args.readout,
        neuron=args.neuron,
        directions=args.directions,
        groups=args.groups,
        patches=args.patches,
        **common,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Run as the command (``argv`` is ``None``), ``demo`` and ``train`` first call
    :func:`snnjax.tune_host_allocator` unless given ``--no-tune-allocator``; called from Python with
    an explicit ``argv``, the calling process's allocator is left alone.
    """
    parser = _parser()
    as_command = argv is None
    args = parser.parse_args(argv)
    if as_command and args.command in ("demo", "train") and not args.no_tune_allocator:
        from snnjax.host import tune_host_allocator

        tune_host_allocator()  # before JAX's backends start and their threads pick malloc arenas
    processes = getattr(args, "num_processes", None) or 1
    if getattr(args, "devices", None):  # before JAX's backends start
        from snnjax.sharding import simulate_cpu_devices

        simulate_cpu_devices(max(1, args.devices // processes))
    try:
        if args.command == "download":
            if args.name in ("shd", "ssc"):
                from snnjax.datasets.shd import download_shd

                print(f"{args.name} is in {download_shd(args.directory, name=args.name)}")
            elif args.name in ("nmnist", "dvs_gesture", "cifar10_dvs"):
                from snnjax.datasets.events import download_events

                print(f"{args.name} is in {download_events(args.name, args.directory)} (pass it as --data-dir)")
            else:
                from snnjax.datasets.tfds_source import load_tfds

                for split in ("train", "test"):
                    load_tfds(args.name, split, args.directory, download=True)
                print(f"{args.name} is prepared in tensorflow-datasets' data folder")
            return 0
        if args.command == "train" and (
            args.distributed or args.coordinator or args.num_processes is not None or args.process_id is not None
        ):
            from snnjax.sharding import initialize

            try:
                initialize(args.coordinator, args.num_processes, args.process_id)
            except RuntimeError as error:  # no coordinator, a cluster JAX does not know, ...
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"could not join the multi-host run: {reason}") from error
        from snnjax.train.loop import TrainingDiverged, fit

        try:
            result = fit(_config(args))
        except TrainingDiverged as error:
            print(f"snnjax: training stopped: {error}", file=sys.stderr)
            return 1
    except (ValueError, FileNotFoundError, ImportError, OSError) as error:
        from snnjax.train.checkpoint import NoCheckpointLoads

        lines = str(error).splitlines() or [type(error).__name__]
        shown = lines if isinstance(error, NoCheckpointLoads) else lines[:1]  # its lines are one per checkpoint
        parser.exit(2, "".join(f"snnjax: error: {line.strip()}\n" for line in shown))
    import jax

    if jax.process_index() != 0:  # on several hosts, process 0 reports
        return 0
    written = ", ".join(
        [
            "metrics.jsonl",
            *(["checkpoints/"] if (result.out / "checkpoints").is_dir() else []),
            *(f.name for f in result.files),
        ]
    )
    print(f"test accuracy {result.test_accuracy:.3f} (chance {1 / result.num_classes:.3f}); {written} in {result.out}")
    return 0
