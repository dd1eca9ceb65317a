"""The ``recipe`` command. Heavy imports happen inside the commands so ``--help`` is instant."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from runner.cli_args import build_parser

# exit statuses of `recipe run` (README, Commands)
EXIT_STAGE = 1  # a stage failed (or an API budget stopped it), or the run could not start or write its files
EXIT_RECIPE = 2  # a bad recipe or bad arguments
EXIT_FAILED_RECORDS = 3  # the run finished, but a stage has more failed records than its max_failed


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _print_problems(err) -> None:
    lines = err.lines()
    for line in lines:  # plain lines: editors and CI parse file:line:col, so never wrap them
        print(line, file=sys.stderr)
    print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was run.", file=sys.stderr)


def _load(args, recipe: str):
    from runner.load import load_recipe

    return load_recipe(recipe, profile=args.profile, overrides=args.overrides, trust_code=args.trust_code)


# ---------------------------------------------------------------------------------------------- commands

def cmd_validate(args) -> int:
    from runner.errors import RecipeError

    status = 0
    args.overrides = [a for a in args.recipes if "=" in a and not Path(a).exists()]
    for recipe in [a for a in args.recipes if a not in args.overrides]:
        try:
            loaded = _load(args, recipe)
        except RecipeError as e:
            _print_problems(e)
            status = EXIT_RECIPE
            continue
        print(f"{recipe}: ok — {len(loaded.order)} stages: {' → '.join(loaded.order)}")
    return status


def _setup_logging(run_root: Path, verbose: bool) -> None:
    import logging

    from registry.secrets import RedactingFilter

    run_root.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_recipe", False):
            root.removeHandler(h)
    fh = logging.FileHandler(run_root / "run.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fh.addFilter(RedactingFilter())
    fh._recipe = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    files = logging.getLogger("recipe.files")
    for h in [h for h in files.handlers if getattr(h, "_recipe", False)]:
        files.removeHandler(h)
    sh = logging.StreamHandler(sys.stderr)
    sh.addFilter(RedactingFilter())
    sh._recipe = True  # type: ignore[attr-defined]
    if verbose:
        sh.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(sh)
    else:  # problems with the run's own files (a damaged log line skipped) are said on the console too
        sh.setLevel(logging.WARNING)
        sh.setFormatter(logging.Formatter("warning: %(message)s"))
        files.addHandler(sh)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args) -> int:
    import warnings

    # library deprecation notices say nothing a recipe author can act on; run.log keeps our own warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    from runner.errors import RecipeError, RunFileError, StageFailure
    from runner.session import run_recipe

    try:
        loaded = _load(args, args.recipe)
    except RecipeError as e:
        _print_problems(e)
        return EXIT_RECIPE
    shard = None
    if args.shard:
        m = re.fullmatch(r"(\d+)/(\d+)", args.shard)
        if not m or not int(m.group(1)) < int(m.group(2)):
            print(f"--shard {args.shard!r}: expected I/N with 0 <= I < N, e.g. 0/4", file=sys.stderr)
            return EXIT_RECIPE
        if args.stage and len(args.stage) == 1 and args.stage[0] not in loaded.components:
            from registry.suggest import suggestion

            print(f"--stage {args.stage[0]!r}: no such stage" + suggestion(args.stage[0], loaded.order),
                  file=sys.stderr)
            return EXIT_RECIPE
        if not args.stage or len(args.stage) != 1 or loaded.components[args.stage[0]].shape != "map":
            print("--shard needs exactly one --stage, a map stage (its records are split by batch)",
                  file=sys.stderr)
            return EXIT_RECIPE
        shard = (int(m.group(1)), int(m.group(2)))
    if (args.executor is None) != (args.shards is None) or (args.executor and shard):
        print("--executor and --shards go together (and without --shard, which runs one shard here)",
              file=sys.stderr)
        return EXIT_RECIPE
    console = _console()
    from rich.markup import escape

    from registry.secrets import redact
    from runner.backends.base import BudgetExceeded
    from runner.publish import PublishError
    from runner.run_lock import RunFolderBusy

    run = run_recipe
    if args.executor:
        from functools import partial

        from runner.cluster.submit import run_with_executor

        run = partial(run_with_executor, kind=args.executor, shards=args.shards, profile=args.profile,
                      overrides=list(args.overrides),
                      load_options={"trust_code": args.trust_code},
                      say=lambda m: console.print(escape(m), soft_wrap=True))
    try:
        outcome = run(loaded, Path(args.runs_dir), console=console, progress=not args.no_progress,
                      retry_failed=args.retry_failed, publish=not args.no_publish, stages=args.stage,
                      setup_logging=lambda root: _setup_logging(root, args.verbose), shard=shard,
                      wait=args.wait, jobs=args.jobs)
    except RunFolderBusy as e:
        console.print(f"[bold red]not started:[/] {escape(str(e))}", soft_wrap=True)
        return EXIT_STAGE
    except BudgetExceeded as e:
        console.print(f"[bold yellow]stopped: API budget reached ({escape(redact(str(e)))}). Finished work is "
                      f"kept; raise budget_usd and run again to continue.[/]")
        return EXIT_STAGE
    except PublishError as e:
        console.print(f"[bold red]publish failed:[/] {escape(redact(str(e)))}")
        console.print("The run itself finished; publish it again with `recipe publish`.")
        return EXIT_STAGE
    except StageFailure as e:
        # never wrapped: the file it names stays one piece a person can copy
        console.print(f"[bold red]failed:[/] {escape(redact(str(e)))}", soft_wrap=True)
        console.print("Fix the cause and run the same command again: finished records and calls are reused.")
        return EXIT_STAGE
    except (RunFileError, OSError) as e:  # a damaged run file, or a run-level one that cannot be written
        from runner.store import is_disk_fault, write_fault

        problem = e if isinstance(e, RunFileError) else write_fault(None, e) if is_disk_fault(e) else \
            f"{e.filename or ''}: {e.strerror or e}"
        console.print(f"[bold red]failed:[/] {escape(redact(str(problem)))}", soft_wrap=True)
        return EXIT_STAGE
    console.print(outcome.text)
    for line in outcome.details:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return outcome.exit_code


def cmd_plan(args) -> int:
    from rich.table import Table

    from runner.errors import RecipeError
    from runner.folders import StageFolders
    from runner.plan import make_plan

    try:
        loaded = _load(args, args.recipe)
    except RecipeError as e:
        _print_problems(e)
        return EXIT_RECIPE
    rows = make_plan(StageFolders.open(loaded, Path(args.runs_dir)))
    t = Table(title=f"plan: {loaded.name}" + (f" (profile {loaded.profile})" if loaded.profile else ""))
    for col in ("stage", "type", "status", "records in", "records out", "LLM calls", "est. cost $", "model"):
        t.add_column(col)
    total_cost = 0.0
    unknown_cost = False
    for r in rows:
        n_in = ", ".join(f"{k}={'?' if v is None else v}" for k, v in r.records_in.items())
        if r.cost_usd is None and r.status == "run" and r.priced:
            unknown_cost = True
        total_cost += r.cost_usd or 0.0
        t.add_row(r.stage, r.type, "[green]cached[/]" if r.status == "cached" else "[yellow]run[/]", n_in,
                  "?" if r.records_out is None else str(r.records_out), "?" if r.llm_calls is None else str(r.llm_calls),
                  ("?" if r.priced else "") if r.cost_usd is None else f"{r.cost_usd:.4f}", r.model)
    console = _console()
    console.print(t)
    n_run = sum(r.status == "run" for r in rows)
    console.print(f"{n_run} stage(s) to run, {len(rows) - n_run} cached; estimated API cost ${total_cost:.4f}"
                  + (" + stages marked ? (their token counts are unknown until their inputs exist)"
                     if unknown_cost else ""))
    return 0


def cmd_components(args) -> int:
    from registry import components as reg

    console = _console()
    for name in reg.names():
        try:
            cls = reg.get(name)
            console.print(f"{name:28} {reg.summary(cls)}", markup=False, soft_wrap=True)
        except Exception as e:  # a broken plugin should not hide the rest
            console.print(f"[bold]{name:28}[/] [red](cannot load: {e})[/]")
    return 0


def cmd_show(args) -> int:
    from registry import components as reg
    from registry.suggest import suggestion

    try:
        cls = reg.get(args.type)
    except reg.UnknownComponent as e:
        print(e.reason or f"unknown component {args.type!r}" + suggestion(args.type, reg.names()), file=sys.stderr)
        return EXIT_RECIPE
    console = _console()
    console.print(f"[bold]{cls.type}[/] ({cls.shape}, version {cls.version}) — {cls.__module__}.{cls.__name__}")
    console.print((cls.__doc__ or "").strip(), markup=False)
    console.print()
    if cls.inputs:
        console.print("[bold]inputs[/]")
        for port, fields in cls.inputs.items():
            opt = " (optional)" if port in cls.optional_inputs else ""
            console.print(f"  {port}{opt}: records with {sorted(fields) or 'any fields'}", markup=False)
    out = cls().output_fields() if _instantiable(cls) else cls.outputs
    console.print(f"[bold]outputs[/]: {sorted(out) if out is not None else 'fields depend on the data'}")
    if cls.models:
        console.print("[bold]models[/]")
        for slot, ms in cls.models.items():
            extra = f", default {ms.default}" if ms.default else ""
            console.print(f"  {slot}: {ms.kind}{'' if ms.required else ', optional'}{extra} {ms.doc}", markup=False)
    console.print("[bold]params[/]")
    for name, f in cls.Params.model_fields.items():
        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        console.print(f"  {name}: {ann} = {default}", markup=False)
        if f.description:
            console.print(f"      {f.description}", markup=False)
    return 0


def _instantiable(cls) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


def cmd_zoo(args) -> int:
    from registry import zoo_cli
    from registry.zoo import Zoo

    zoo = Zoo.load([Path(f) for f in args.zoo_file])
    if args.zoo_cmd == "list":
        return zoo_cli.cmd_list(zoo)
    if args.zoo_cmd == "show":
        return zoo_cli.cmd_show(zoo, args.name)
    if args.zoo_cmd == "pull":
        return zoo_cli.cmd_pull(zoo, args.name)
    return zoo_cli.cmd_verify(zoo, args.name)


def cmd_serve(args) -> int:
    from registry.zoo import Zoo
    from runner.backends import open_llm
    from runner.backends.serve import serve

    zoo = Zoo.load()
    try:
        rm = zoo.resolve(args.name, pull=True, progress=lambda m: print(m, file=sys.stderr))
    except KeyError as e:
        print(f"unknown zoo model {args.name!r}" + (
            " — did you mean " + " or ".join(map(repr, getattr(e, "suggestions", []))) + "?"
            if getattr(e, "suggestions", None) else ""), file=sys.stderr)
        return EXIT_RECIPE
    if rm.backend == "openai":
        print(f"{args.name} is an API model; `recipe serve` serves local models", file=sys.stderr)
        return EXIT_RECIPE
    llm = open_llm(rm.model_copy(update={"backend": "transformers"}), options={"device": args.device} if args.device else None)
    serve(llm, args.host, args.port, args.name)
    return 0


def _run_dir(args) -> Path | None:
    """RUN as a run folder: the path itself, else ``<runs-dir>/RUN``; None (said on stderr) when neither is."""
    run_dir = Path(args.run)
    if (run_dir / "latest.json").exists():
        return run_dir
    alt = Path(args.runs_dir) / args.run
    if (alt / "latest.json").exists():
        return alt
    print(f"{args.run}: not a run folder (no latest.json); give runs/<recipe>", file=sys.stderr)
    return None


def cmd_publish(args) -> int:
    from runner.publish import publish_run

    run_dir = _run_dir(args)
    if run_dir is None:
        return EXIT_RECIPE
    from runner.publish import PublishError

    try:
        items = publish_run(run_dir, args.to, artifacts=args.artifacts, private=not args.public)
    except (PublishError, OSError, ValueError) as e:  # a damaged run file is named by its message
        print(f"publish failed: {e}", file=sys.stderr)
        return EXIT_STAGE
    for it in items:
        print(it)
    return 0


def cmd_report(args) -> int:
    from runner.report_html import write_html_report

    run_dir = _run_dir(args)
    if run_dir is None:
        return EXIT_RECIPE
    try:
        if args.refresh:
            from runner.report_html.refresh import refresh_report_data

            for line in refresh_report_data(run_dir):
                print(f"warning: {line}", file=sys.stderr)
        path = write_html_report(run_dir)
    except OSError as e:
        print(f"report failed: {e}", file=sys.stderr)
        return EXIT_STAGE
    print(path)
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print("no web browser could be started; open the file above yourself", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- parser

COMMANDS = {"run": cmd_run, "validate": cmd_validate, "plan": cmd_plan, "components": cmd_components,
            "show": cmd_show, "zoo": cmd_zoo, "serve": cmd_serve, "publish": cmd_publish,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may come after options too (`recipe run r.yaml --no-progress a.b=1`)
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x]
    if stray or (extra and not hasattr(args, "overrides") and not hasattr(args, "recipes")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        if hasattr(args, "overrides"):
            args.overrides = list(args.overrides) + extra
        else:
            args.recipes = list(args.recipes) + extra
    if argv is None and args.command in ("run", "serve"):  # the console command, not a call from Python
        from registry.allocator import AllocatorError, maybe_preload

        try:
            maybe_preload()  # restarts this command with tcmalloc preloaded when installed (CPU memory)
        except AllocatorError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_RECIPE
    try:
        return int(COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
