"""The direction of imports and the thinness of tasks are part of the design: keep them true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "textclf"
ORCHESTRATION = {"prefect", "prefect_dask", "flows", "tasks", "textclf_flows", "textclf_tasks"}
# Types and errors: building a config or raising an error is not "calling the library".
TYPE_MODULES = {"textclf.config", "textclf.errors"}
IMPORTERS = {"import_module", "__import__", "find_spec", "import_from_path"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.AST):
    """Every module name an import names, at any depth (function-local ones too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def _dynamic_imports(tree: ast.AST):
    """String arguments of importlib.import_module(), __import__(), find_spec() and the like."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORTERS and isinstance(node.args[0].value, str):
                yield node.args[0].value


def test_library_never_imports_prefect_or_the_orchestration_layer():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in SRC.rglob("*.py")
        for name in [*_imports(_tree(path)), *_dynamic_imports(_tree(path))]
        if name.split(".")[0] in ORCHESTRATION
    ]
    assert not offenders, offenders


def test_the_dynamic_import_check_sees_importlib_strings():
    tree = ast.parse("import importlib\nx = importlib.import_module('flows.retrain')\n__import__('tasks.train')\n")
    assert list(_dynamic_imports(tree)) == ["flows.retrain", "tasks.train"]


def test_importing_every_library_module_loads_no_prefect():
    modules = sorted(
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts) for p in SRC.rglob("*.py") if p.name not in {"__main__.py"}
    )
    code = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({m!r})\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_flows_only_compose_tasks():
    for path in (REPO / "flows").glob("*.py"):
        # deploy.py builds deployments, cli.py adds commands, events.py sends Prefect events: no flow composition.
        if path.name in {"__init__.py", "deploy.py", "cli.py", "events.py"}:
            continue
        for name in _imports(_tree(path)):
            top = name.split(".")[0]
            # flows may run other flows as sub-flows and pick a task runner (prefect_dask).
            assert top in {"__future__", "prefect", "prefect_dask", "textclf_tasks", "textclf_flows", "textclf"}, (
                f"{path.name} imports {name}"
            )
            if top == "textclf":
                allowed = {"textclf.config", "textclf.stages", "textclf.deployments", "textclf.form"}
                assert name in allowed, f"{path.name} reaches into {name}"


def _library_names(tree: ast.Module) -> set[str]:
    """Names bound by `import textclf...` / `from textclf... import x`, except config and error types."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "textclf":
            names |= {
                a.asname or a.name
                for a in node.names
                if node.module not in TYPE_MODULES and f"{node.module}.{a.name}" not in TYPE_MODULES
            }
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "textclf"}
    return names


def _library_calls(node: ast.AST, names: set[str]) -> list[str]:
    """Calls whose callee is a library name or an attribute of one (`stages.train(...)`)."""
    calls = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        root = call.func
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in names:
            calls.append(ast.unparse(call.func))
    return calls


def _is_task(node: ast.AST) -> bool:
    """A task, or a flow state hook (on_failure=[...]: called with flow, flow_run, state), held to the same rule."""
    if not isinstance(node, ast.FunctionDef):
        return False
    hook = [a.arg for a in node.args.args] == ["flow", "flow_run", "state"]
    return hook or any((d.func if isinstance(d, ast.Call) else d).__dict__.get("id") == "task" for d in node.decorator_list)


def test_each_task_is_at_most_one_library_call():
    """A task wraps one call into textclf (retries, caching, logging and artifacts around it); helpers in
    tasks/ that are not tasks make none, so no logic hides beside a task."""
    found = 0
    for path in sorted((REPO / "tasks").glob("*.py")):
        tree = _tree(path)
        names = _library_names(tree)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            calls = _library_calls(node, names)
            if _is_task(node):
                found += 1
                assert len(calls) <= 1, f"{path.name}:{node.name} calls {calls}; move the logic into textclf.stages"
            else:
                assert not calls, f"{path.name}:{node.name} (not a task) calls {calls}; move it into textclf"
    assert found >= 15  # the check saw the tasks


def test_the_task_check_counts_library_calls():
    tree = ast.parse(
        "from textclf import stages, tracking\nfrom textclf.config import PipelineConfig\n"
        "@task(name='x')\ndef t(cfg):\n    r = stages.train(PipelineConfig())\n"
        "    tracking.log(r)\n    r.end()\n"
    )
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert _is_task(func)
    assert _library_calls(func, _library_names(tree)) == ["stages.train", "tracking.log"]


def test_flows_leave_print_alone():
    """Prefect's log_prints patches print(), which swallows the stdout that dill captures from dis.dis()
    while `datasets` fingerprints a function (bytecode lands in the task logs, the fingerprint loses its
    globals). Tasks log through Prefect's logger instead."""
    from textclf_flows.augment_fan_out import translate_fan_out
    from textclf_flows.retrain import retrain

    assert not retrain.log_prints and not translate_fan_out.log_prints


def test_flows_and_tasks_are_not_installed_as_generic_top_level_packages():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print(u.find_spec('flows'), "
            "u.find_spec('tasks'), u.find_spec('textclf_flows') is not None)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert out.stdout.split() == ["None", "None", "True"], out.stdout + out.stderr
