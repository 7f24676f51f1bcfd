"""Plots training loss (and validation accuracy when present) of one or more runs from their
metrics.jsonl files: python3 launch/plot_metrics.py OUT.png LABEL=path/metrics.jsonl ..."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for spec in runs:
        label, path = spec.split("=", 1)
        rows = [json.loads(line) for line in open(path)]
        steps = [r for r in rows if "loss" in r]
        ax_loss.plot([r["step"] for r in steps], [r["loss"] for r in steps], label=label)
        evals = [r for r in rows if "val_accuracy" in r]
        if evals:
            ax_acc.plot([r["step"] for r in evals], [100 * r["val_accuracy"] for r in evals], "o-",
                        label=label)
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    ax_acc.set(xlabel="step", ylabel="retrieval accuracy (%)", title="validation retrieval accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
