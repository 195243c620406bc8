"""``lnc-report``: which samples in a file of per-sample losses are probably mislabelled.

Reads a CSV, Parquet or ``.npy`` file with one loss (or confidence) per sample and optional
label, prediction, item and noise-mask columns, and a model's predicted probabilities (columns
of the same file, or an ``(n, K)`` ``.npy`` matrix); fits the Beta mixture (or the Gaussian
baseline) and counts the wrong labels from all of it; prints a summary and the top suspects;
writes the report as CSV or Parquet and the plots as PNG. Bad input stops with a message saying what was wrong and exit status 2; outputs
are written whole or not at all; ``.npy`` files are read with ``allow_pickle=False``.

Run ``lnc-report --help`` for the options.
"""

import argparse
import fnmatch
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._atomic import atomic_path
from .beta_mixture import BetaMixtureNoiseDetector
from .gaussian_mixture import GaussianMixtureNoiseDetector
from .probabilities import check_pred_probs, given_label_loss
from .report import noise_report
from .summary import noise_summary

__all__ = ["main", "read_table", "InputError"]

TABLE_SUFFIXES = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
READ_SUFFIXES = {**TABLE_SUFFIXES, ".npy": "NumPy"}
NPY_MAGIC = b"\x93NUMPY"


class InputError(ValueError):
    """The input (a file, a column, an option) is not what the command accepts."""


def _need_pyarrow(what):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError(f'{what} Parquet needs pyarrow: pip install "lnc[parquet]"') from None


def read_table(path, default_column="loss"):
    """Read ``path`` (``.csv``, ``.parquet``/``.pq`` or ``.npy``) into a DataFrame.

    A plain 1-D ``.npy`` array becomes the one column ``default_column``; a structured array
    gives one column per field. Raises ``InputError`` saying what is wrong otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise InputError(f"{path}: unknown file type {suffix or '(none)'!r}; give a .csv, .parquet or .npy file")
    if suffix == ".npy":
        return _read_npy(path, default_column)
    if suffix == ".csv":
        try:
            return pd.read_csv(path)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{path} is not a readable CSV file: {error}") from None
    _need_pyarrow("reading")
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid, OSError, ...
        raise InputError(f"{path} is not a readable Parquet file: {error}") from None


def _read_npy(path, default_column):
    with open(path, "rb") as file:
        if file.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise InputError(f"{path} is not a .npy file (it does not start with the NumPy header)")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise InputError(
                f"{path} holds Python objects, which would need unpickling; lnc never loads "
                "pickles: save a numeric (or structured numeric) array"
            ) from None
        raise InputError(f"{path} is not a readable .npy file: {error}") from None
    if array.dtype.names:
        if array.ndim != 1:
            raise InputError(f"{path}: a structured array must be 1-D (one record per sample); got shape {array.shape}")
        return pd.DataFrame({name: array[name] for name in array.dtype.names})
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InputError(
            f"{path}: a plain .npy array must be 1-D (one {default_column} per sample); got shape "
            f"{array.shape}. For several columns use CSV, Parquet or a structured array"
        )
    return pd.DataFrame({default_column: array})


def _column(frame, name, source):
    if name not in frame.columns:
        available = ", ".join(repr(str(c)) for c in frame.columns[:20])
        raise InputError(f"{source} has no column {name!r}; its columns are: {available}")
    return frame[name]


def _rows(mask):
    rows = np.flatnonzero(np.asarray(mask))
    return ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")


def numeric_column(frame, name, source, *, finite=True):
    """Column ``name`` as float64, or an InputError naming the first bad rows (counted from 0)."""
    raw = _column(frame, name, source)
    if raw.dtype == bool:
        raw = raw.astype(np.int64)
    values = pd.to_numeric(raw, errors="coerce")
    not_numeric = values.isna() & raw.notna()
    if not_numeric.any():
        first = int(np.flatnonzero(not_numeric.to_numpy())[0])
        raise InputError(
            f"column {name!r} of {source} has {int(not_numeric.sum())} non-numeric value(s), first at "
            f"row {first}: {raw.iloc[first]!r}"
        )
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).any():
        raise InputError(
            f"column {name!r} of {source} has {int(np.isnan(values).sum())} missing or NaN value(s) "
            f"(rows {_rows(np.isnan(values))}); remove or fill them first"
        )
    if finite and np.isinf(values).any():
        raise InputError(
            f"column {name!r} of {source} has {int(np.isinf(values).sum())} infinite value(s) "
            f"(rows {_rows(np.isinf(values))}); a loss of inf usually means a probability of 0: clip it"
        )
    return values


def _label_column(frame, name, source):
    raw = _column(frame, name, source)
    if raw.isna().any():
        raise InputError(f"column {name!r} of {source} has missing labels (rows {_rows(raw.isna())})")
    if pd.api.types.is_numeric_dtype(raw) and raw.dtype != bool:
        values = raw.to_numpy(dtype=np.float64)
        if np.any(values != np.round(values)):
            raise InputError(f"column {name!r} of {source} must hold class indices or names; it has non-integer numbers")
        return values.astype(np.int64)
    return raw.astype(str).to_numpy(dtype=object)


def _mask_column(frame, name, source):
    values = numeric_column(frame, name, source)
    if not np.isin(values, (0, 1)).all():
        raise InputError(f"column {name!r} of {source} must be a 0/1 or True/False noise mask")
    return values.astype(bool)


def _check_output(path, suffixes, what):
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {path}: give a name ending in {' or '.join(sorted(suffixes))}")
    if not path.parent.is_dir():
        raise InputError(f"{what} {path}: the folder {path.parent} does not exist")
    return path


def write_report(report, path):
    """Write the report as CSV or Parquet (by suffix), whole or not at all."""
    path = Path(path)
    report = report.copy()
    report.attrs = {}  # the count is printed, not stored in the file
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            report.to_csv(tmp, index_label="row")
        else:
            report.rename_axis("row").to_parquet(tmp)
    return path


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lnc-report",
        description="Find the probably mislabelled samples in a file of per-sample losses (or confidences).",
        epilog="Exit status 2 means the input was not usable; the message says why.",
    )
    parser.add_argument("input", help="a .csv, .parquet or .npy file, one row per training sample")
    parser.add_argument("--column", help="the column of losses/confidences (default: 'loss' or 'confidence'; "
                        "without one, the given labels' losses are computed from the probabilities)")
    parser.add_argument("--input-type", choices=("loss", "confidence"), default="loss",
                        help="losses (higher = noisier; default) or confidences in the given label (higher = cleaner)")
    parser.add_argument("--label-column", help="the given labels (class indices or names)")
    parser.add_argument("--predicted-column", help="the model's predicted labels")
    parser.add_argument("--probs-columns", nargs="+", metavar="COLUMN",
                        help="the model's predicted probabilities, one column per class in class order; "
                             "shell-style patterns such as 'prob_*' match columns in file order")
    parser.add_argument("--probs", metavar="FILE.npy", help="the predicted probabilities as an (n, K) .npy matrix")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="the class of each probability column, in column order (default: integer labels are "
                             "the column numbers, other labels map to the columns in sorted order)")
    parser.add_argument("--item-column", help="what each row is (file name, id), copied into the report")
    parser.add_argument("--noise-mask-column", help="the true 0/1 'is mislabelled' flag, for experiments")
    parser.add_argument("--detector", choices=("beta", "gaussian"), default="beta",
                        help="the Beta mixture (default) or the Gaussian-mixture baseline")
    parser.add_argument("--threshold", type=float, default=None,
                        help="flag samples with p_noisy above this (default: flag the estimated number of wrong "
                             "labels, the noisiest first)")
    parser.add_argument("--bootstrap", type=int, help=argparse.SUPPRESS)  # removed: the interval needs none
    parser.add_argument("--output", "-o", help="write the report here (.csv or .parquet)")
    parser.add_argument("--sort", action="store_true", help="write the rows most suspect first (default: input order)")
    parser.add_argument("--plot", help="write the loss histogram with the fitted mixture here (.png)")
    parser.add_argument("--posterior-plot", help="write the p(noisy | loss) curve here (.png)")
    parser.add_argument("--top", type=int, default=10, help="suspects to print (0: none)")
    return parser


def _probabilities(args, frame, source):
    """The predicted probabilities asked for (``--probs`` or ``--probs-columns``), or None."""
    if args.probs:
        path = Path(args.probs)
        if path.suffix.lower() != ".npy":
            raise InputError(f"--probs {path}: give an (n, K) .npy matrix")
        try:
            probs = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"--probs {path} is not a readable numeric .npy file: {error}") from None
        name = path.name
    elif args.probs_columns:
        names = []
        for pattern in args.probs_columns:
            matched = [str(c) for c in frame.columns if fnmatch.fnmatchcase(str(c), pattern)]
            if not matched:
                _column(frame, pattern, source)  # raises, listing the columns
            names += [c for c in matched if c not in names]
        probs = np.column_stack([numeric_column(frame, c, source) for c in names])
        name = f"columns {names[0]} .. {names[-1]} of {source}"
    else:
        return None
    try:
        return check_pred_probs(probs, len(frame))
    except ValueError as error:
        raise InputError(f"{name}: {error}") from None


def run(args):
    """Do what the parsed ``args`` ask; raise InputError on bad input."""
    if args.output:
        _check_output(args.output, set(TABLE_SUFFIXES), "--output")
        if Path(args.output).suffix.lower() != ".csv":
            _need_pyarrow("writing")
    for option in ("plot", "posterior_plot"):
        if getattr(args, option):
            _check_output(getattr(args, option), {".png"}, f"--{option.replace('_', '-')}")
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise InputError(f'--{option.replace("_", "-")} needs matplotlib: pip install "lnc[plot]"') from None
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise InputError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.bootstrap is not None:
        raise InputError("--bootstrap was removed: every report now has a 90% interval, without resampling")
    if args.probs and args.probs_columns:
        raise InputError("give the probabilities as --probs FILE.npy or as --probs-columns, not both")
    column = args.column or args.input_type
    frame = read_table(args.input, default_column=column)
    source = Path(args.input).name
    if len(frame) == 0:
        raise InputError(f"{source} has no rows")
    probs = _probabilities(args, frame, source)
    if probs is not None and not args.label_column:
        raise InputError("the predicted probabilities need the given labels: add --label-column")
    optional = {
        "labels": args.label_column and _label_column(frame, args.label_column, source),
        "predicted_labels": args.predicted_column and _label_column(frame, args.predicted_column, source),
        "items": args.item_column and _column(frame, args.item_column, source).to_numpy(),
        "noise_mask": args.noise_mask_column and _mask_column(frame, args.noise_mask_column, source),
    }
    optional = {key: value for key, value in optional.items() if value is not None}
    if column not in frame.columns and probs is not None and args.column is None:
        try:  # no losses in the file: the given labels' cross-entropy, from the probabilities
            values = given_label_loss(optional["labels"], probs, args.classes)
        except ValueError as error:
            raise InputError(f"cannot read the labels against the probabilities: {error}") from None
        args.input_type, column = "loss", "(the labels' losses from the probabilities)"
    else:
        values = numeric_column(frame, column, source)
    kind = BetaMixtureNoiseDetector if args.detector == "beta" else GaussianMixtureNoiseDetector
    detector = kind(input_type=args.input_type, classes=args.classes)
    if args.detector == "gaussian":
        detector.set_params(random_state=0)
    try:  # with labels: the count within each label; with probabilities, confident learning's
        detector.fit(values, optional.get("labels"), pred_probs=probs)
    except ValueError as error:
        raise InputError(f"cannot fit the detector on {column!r} of {source}: {error}") from None
    report = noise_report(values, detector, pred_probs=probs, classes=args.classes, threshold=args.threshold,
                          sort=args.sort, **optional)
    print(noise_summary(report))
    if args.top > 0:
        print(f"\ntop {min(args.top, len(report))} suspects:")
        print(report.sort_values("rank").head(args.top).to_string(float_format="{:.4f}".format))
    if args.output:
        print(f"\nreport written to {write_report(report, args.output)}")
    if args.plot or args.posterior_plot:
        # Figures without pyplot: no window, no global backend switch, nothing left open.
        from matplotlib.figure import Figure

        from .plotting import plot_loss_mixture, plot_posterior

        if args.plot:
            ax = Figure(figsize=(6.4, 4), layout="constrained").add_subplot()
            plot_loss_mixture(detector, values, noise_mask=optional.get("noise_mask"), ax=ax, path=args.plot)
            print(f"mixture plot written to {args.plot}")
        if args.posterior_plot:
            ax = Figure(figsize=(6.4, 4), layout="constrained").add_subplot()
            plot_posterior(detector, values, ax=ax, path=args.posterior_plot)
            print(f"posterior plot written to {args.posterior_plot}")
    return report


def main(argv=None):
    """Entry point of ``lnc-report``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            run(args)
    except InputError as error:
        print(f"lnc-report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
