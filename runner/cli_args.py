"""The ``recipe`` command line: its arguments (``runner.cli`` runs the commands)."""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recipe-zoo")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recipe", description="Run declarative long-context alignment recipes "
                                "with a pinned model zoo.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def recipe_opts(sp, many: bool = False) -> None:
        if many:  # recipes and KEY=VALUE overrides mixed; told apart by the '='
            sp.add_argument("recipes", nargs="+", metavar="RECIPE|KEY=VALUE", help="recipe or lockfile(s), "
                            "then optional overrides")
        else:
            sp.add_argument("recipe", metavar="RECIPE", help="recipe file or recipe.lock.yaml")
            sp.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                            help="typed overrides, e.g. stages.sft.params.learning_rate=1e-5 "
                                 "(they beat --profile, which beats the file)")
        sp.add_argument("--profile", "-p", help="named profile from the recipe's profiles:")
        sp.add_argument("--runs-dir", default="runs", help="where runs/<recipe>/ lives (default: ./runs)")
        sp.add_argument("--trust-code", action="store_true", help="let a recipe that is not one of your own "
                        "files (outside this directory, downloaded) run the code it names: module:Class "
                        "components, plugins, trust_remote_code models")

    sp = sub.add_parser("run", help="validate, then run a recipe (cached, resumable)")
    recipe_opts(sp)
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--retry-failed", action="store_true", help="also try again the failed records that are within "
                    "a stage's max_failed (those beyond it are tried again by any run)")
    sp.add_argument("--wait", action="store_true", help="if another run holds the run folder, wait for it to finish "
                    "instead of stopping")
    sp.add_argument("--no-publish", action="store_true", help="skip the recipe's publish: step")
    sp.add_argument("--stage", action="append", help="run only this stage (and what it needs); repeatable")
    sp.add_argument("--shard", metavar="I/N", help="with one --stage (a map stage whose inputs are done): process "
                    "only shard I of N of its batches; run again without --shard to merge and finish")
    sp.add_argument("--executor", choices=["slurm", "local"], help="submit every unfinished map stage as a job "
                    "array of --shards N jobs (submitit; `local`: processes on this machine), wait, then merge "
                    "and run the rest here; job resources from the recipe's executor: block or executor.KEY=VALUE")
    sp.add_argument("--shards", type=_positive, metavar="N", help="with --executor: shard jobs per map stage")
    sp.add_argument("--jobs", "-j", type=_positive, metavar="N", help="run at most N stages at once (default: "
                    "every ready stage that calls only API models, beside one other stage; 1: one at a time)")
    sp.add_argument("--verbose", "-v", action="store_true", help="log to stderr too")
    sp.set_defaults(command="run")

    sp = sub.add_parser("validate", help="check recipes without running anything (exit 2 on problems)")
    recipe_opts(sp, many=True)
    sp.set_defaults(command="validate")

    sp = sub.add_parser("plan", help="show what is cached, what will run, LLM calls and estimated cost")
    recipe_opts(sp)
    sp.set_defaults(command="plan")

    sp = sub.add_parser("components", help="list components with one-line docs")
    sp.set_defaults(command="components")

    sp = sub.add_parser("show", help="a component's params (types, defaults, docs), inputs, outputs, models")
    sp.add_argument("type", metavar="TYPE")
    sp.set_defaults(command="show")

    sp = sub.add_parser("zoo", help="the model zoo: list | show NAME | pull NAME | verify [NAME]")
    sp.add_argument("--zoo-file", action="append", default=[], help="an extra zoo file")
    zs = sp.add_subparsers(dest="zoo_cmd", required=True, metavar="ZOO_COMMAND")
    zs.add_parser("list", help="every model in the zoo")
    for name, helptext in (("show", "one entry, whole"), ("pull", "download/build into the zoo cache")):
        z = zs.add_parser(name, help=helptext)
        z.add_argument("name")
    z = zs.add_parser("verify", help="re-check pulled files against their recorded hashes")
    z.add_argument("name", nargs="?")
    sp.set_defaults(command="zoo")

    sp = sub.add_parser("serve", help="serve a local zoo model as an OpenAI-compatible endpoint")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    sp.set_defaults(command="serve")

    sp = sub.add_parser("publish", help="publish a finished run's datasets, models and scores")
    sp.add_argument("run", metavar="RUN", help="runs/<recipe> folder (or just the recipe name)")
    sp.add_argument("--to", default=None, help="hf://org/name or file://folder (default: file://RUN/published)")
    sp.add_argument("--artifacts", nargs="*", help="stages to publish (default: all with outputs)")
    sp.add_argument("--public", action="store_true", help="make Hub repos public (default private)")
    sp.add_argument("--runs-dir", default="runs")
    sp.set_defaults(command="publish")

    sp = sub.add_parser("report", help="write a run's report.html again (and open it with --open)")
    sp.add_argument("run", metavar="RUN", help="runs/<recipe> folder (or just the recipe name)")
    sp.add_argument("--open", action="store_true", help="open the report in the web browser")
    sp.add_argument("--refresh", action="store_true", help="first compute each finished stage's report data "
                    "again from its records with the installed components (for runs made by an older version)")
    sp.add_argument("--runs-dir", default="runs")
    sp.set_defaults(command="report")
    return p
