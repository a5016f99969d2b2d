"""Package-level checks that need no heavy compute.

Source checks (run by ``scripts/test.sh``):
- ``bevanet_core/`` depends on neither ROS nor ``bevanet_ros`` (AST scan of every file: imports,
  lazy ones included, and module names handed to subprocesses);
- ``setup.py`` installs launch/, config/, bags/, training/ under ``share/bevanet_ros``;
- ``package.xml`` is a valid format-3 ament_python manifest with a rosdep key for each
  third-party import of the package;
- every console script in ``setup.py`` points to an importable ``module:function``.

Installed-layout checks (marker ``installed``, run by ``.ci/run`` through ``colcon test``)
look at the colcon install prefix found on ``AMENT_PREFIX_PATH``.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bevanet_ros"
SHARE_FOLDERS = ("launch", "config", "bags", "training")

# Top-level modules that only exist with ROS 2 (none of them may appear in bevanet_core).
# `rosbags` is a pure-Python bag reader/writer with no ROS dependency and is allowed.
ROS_MODULES = frozenset(
    {
        "rclpy",
        "rclpy_lifecycle",
        "rcl_interfaces",
        "rosidl_runtime_py",
        "rosidl_parser",
        "rmw",
        "rpyutils",
        "ament_index_python",
        "launch",
        "launch_ros",
        "launch_testing",
        "launch_testing_ros",
        "ros2cli",
        "ros2bag",
        "rosbag2_py",
        "cv_bridge",
        "image_geometry",
        "message_filters",
        "tf2_ros",
        "tf2_py",
        "diagnostic_updater",
        "std_msgs",
        "sensor_msgs",
        "builtin_interfaces",
        "diagnostic_msgs",
        "lifecycle_msgs",
        "vision_msgs",
        "geometry_msgs",
        "visualization_msgs",
        "nav_msgs",
        "stereo_msgs",
        "std_srvs",
        "unique_identifier_msgs",
        "rosgraph_msgs",
        "type_description_interfaces",
        "service_msgs",
        "action_msgs",
    }
)

# Python import name -> rosdep keys that satisfy it (any one of them).
ROSDEP_KEYS: dict[str, tuple[str, ...]] = {
    "rclpy": ("rclpy",),
    "std_msgs": ("std_msgs",),
    "sensor_msgs": ("sensor_msgs",),
    "builtin_interfaces": ("builtin_interfaces",),
    "diagnostic_msgs": ("diagnostic_msgs",),
    "lifecycle_msgs": ("lifecycle_msgs",),
    "rcl_interfaces": ("rcl_interfaces",),
    "rosgraph_msgs": ("rosgraph_msgs",),
    "composition_interfaces": ("composition_interfaces",),
    "vision_msgs": ("vision_msgs",),
    "geometry_msgs": ("geometry_msgs",),
    "cv_bridge": ("cv_bridge",),
    "launch": ("launch",),
    "launch_ros": ("launch_ros",),
    "ament_index_python": ("ament_index_python",),
    "message_filters": ("message_filters",),
    "diagnostic_updater": ("diagnostic_updater",),
    "rosbag2_py": ("rosbag2_py",),
    "numpy": ("python3-numpy",),
    "cv2": ("python3-opencv",),
    "yaml": ("python3-yaml",),
    "PIL": ("python3-pil", "python3-pil-pip"),
    "torch": (),  # no rosdep key in rosdistro: PIP_ONLY
    "safetensors": (),
    "onnxruntime": ("python3-onnxruntime", "python3-onnxruntime-pip"),
    "onnx": ("python3-onnx", "python3-onnx-pip"),
    "rosbags": (),
}
# Imports with no rosdep key in rosdistro (python3-torch-pip and the like do not exist, and
# `rosdep install` stops at an unknown key): scripts/bootstrap.sh installs them with pip, as
# README's ROS set-up says, so package.xml must not name a key for them.
PIP_ONLY = frozenset({"torch", "safetensors", "rosbags"})
# setup.py install_requires name -> import name (for the same rosdep check).
REQUIREMENT_IMPORTS = {
    "numpy": "numpy",
    "torch": "torch",
    "safetensors": "safetensors",
    "pillow": "PIL",
    "pyyaml": "yaml",
    "opencv-python-headless": "cv2",
    "opencv-python": "cv2",
    "rosbags": "rosbags",
}
LOCAL_PACKAGES = frozenset({"bevanet_core", "bevanet_ros"})


# ----------------------------------------------------------------------------- helpers
def _setup_kwargs() -> dict[str, Any]:
    """Run setup.py with ``setuptools.setup`` replaced, returning the keyword arguments."""
    import setuptools

    captured: dict[str, Any] = {}
    real_setup = setuptools.setup
    cwd = os.getcwd()
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        os.chdir(REPO)  # setup.py globs relative folders
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    assert captured, "setup.py did not call setuptools.setup()"
    return captured


SETUP = _setup_kwargs()


def _console_scripts() -> dict[str, str]:
    """``{script name: "module:function"}`` from setup.py's entry points."""
    scripts = {}
    for line in SETUP.get("entry_points", {}).get("console_scripts", []):
        name, _, target = line.partition("=")
        scripts[name.strip()] = target.strip()
    return scripts


CONSOLE_SCRIPTS = _console_scripts()


def _share_sources() -> list[Path]:
    """Every file under the share folders, relative to the repository root."""
    files = []
    for folder in SHARE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path.relative_to(REPO))
    return files


def _is_import_guard(handler: ast.ExceptHandler) -> bool:
    """True for ``except ImportError`` / ``ModuleNotFoundError`` / ``Exception`` / bare."""
    names: list[ast.expr] = []
    if handler.type is None:
        return True
    names = list(handler.type.elts) if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError", "Exception"} for n in names)


def imported_modules(source: str, filename: str = "<string>") -> list[tuple[str, int, bool]]:
    """Top-level module names imported by ``source``: ``(name, line, optional)``.

    Covers ``import x``, ``from x import y``, ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name; relative imports are left out. ``optional`` is
    True for imports inside a ``try:`` whose handler catches ImportError.
    """
    tree = ast.parse(source, filename=filename)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_is_import_guard(h) for h in node.handlers):
            for stmt in node.body:
                guarded.update(id(n) for n in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            is_dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"
            )
            arg = node.args[0]
            if is_dynamic and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        for name in names:
            found.append((name.split(".")[0], node.lineno, id(node) in guarded))
    return found


def _python_files(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


# ----------------------------------------------------------------------------- no ROS in core
def test_import_scanner_finds_every_form():
    source = (
        "import os\n"
        "import rclpy.node\n"
        "from sensor_msgs.msg import Image\n"
        "from . import sibling\n"
        "def f():\n"
        "    import importlib\n"
        "    return importlib.import_module('cv_bridge')\n"
        "try:\n"
        "    import launch_ros\n"
        "except ImportError:\n"
        "    launch_ros = None\n"
        "x = __import__('std_msgs')\n"
    )
    found = imported_modules(source)
    ros = sorted((name, optional) for name, _, optional in found if name in ROS_MODULES)
    assert ros == [
        ("cv_bridge", False),
        ("launch_ros", True),
        ("rclpy", False),
        ("sensor_msgs", False),
        ("std_msgs", False),
    ]
    assert "sibling" not in {name for name, _, _ in found}  # relative import: local
    assert ("launch_ros", 9, True) in found
    assert ("rclpy", 2, False) in found


def ros_package_references(source: str, filename: str = "<string>") -> list[tuple[str, int]]:
    """Where ``source`` depends on ROS or on the ROS package: every import (lazy or guarded
    ones too) of a ROS module or of ``bevanet_ros``, and every string naming a ``bevanet_ros``
    module (``python -m bevanet_ros.x`` in a subprocess). ``(what, line)``."""
    found = [
        (name, line) for name, line, _ in imported_modules(source, filename) if name in ROS_MODULES or name == PACKAGE
    ]
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(rf"{PACKAGE}(\.\w+)+(:\w+)?", node.value):
                found.append((node.value, node.lineno))
    return found


def test_reverse_dependency_scanner_catches_lazy_imports_and_spawned_modules():
    source = (
        "PACKAGE = 'bevanet_ros'  # the colcon package (share folder) name is fine\n"
        "CACHE = '~/.cache/bevanet_ros'\n"
        "def through_node():\n"
        "    from bevanet_ros.bag_client import NodeClient\n"
        "    return NodeClient\n"
        "def spawn():\n"
        "    return ['python', '-m', 'bevanet_ros.segmentation_node']\n"
        "try:\n"
        "    import rclpy\n"
        "except ImportError:\n"
        "    rclpy = None\n"
    )
    assert ros_package_references(source) == [
        ("bevanet_ros", 4),
        ("rclpy", 9),
        ("bevanet_ros.segmentation_node", 7),
    ]


def test_bevanet_core_depends_on_neither_ros_nor_the_ros_package():
    files = _python_files("bevanet_core")
    assert REPO / "bevanet_core" / "models" / "bevanet.py" in files, "scan found no model code"
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in files
        for what, line in ros_package_references(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offenders, (
        "bevanet_core must not depend on ROS or bevanet_ros (dependencies point ROS -> core):\n" + "\n".join(offenders)
    )


# ----------------------------------------------------------------------------- setup.py
def test_setup_installs_both_packages():
    packages = set(SETUP["packages"])
    assert {"bevanet_core", "bevanet_core.models", "bevanet_ros"} <= packages, packages
    # every folder holding python code under the two packages is a package that gets installed
    for top in LOCAL_PACKAGES:
        for init in (REPO / top).rglob("__init__.py"):
            dotted = ".".join(init.parent.relative_to(REPO).parts)
            assert dotted in packages, f"{dotted} has an __init__.py but is not installed"


@pytest.mark.parametrize("folder", SHARE_FOLDERS)
def test_data_files_cover_share_folder(folder):
    installed = {(dest, src) for dest, srcs in SETUP["data_files"] for src in srcs}
    sources = [p for p in _share_sources() if p.parts[0] == folder]
    assert sources, f"{folder}/ has no files: nothing goes to share/{PACKAGE}/{folder}"
    for rel in sources:
        dest = str(Path("share") / PACKAGE / rel.parent)
        assert (dest, str(rel)) in installed, f"setup.py data_files miss {rel} -> {dest}"


def test_data_files_register_the_package():
    installed = {(dest, src) for dest, srcs in SETUP["data_files"] for src in srcs}
    assert ("share/ament_index/resource_index/packages", f"resource/{PACKAGE}") in installed
    assert (f"share/{PACKAGE}", "package.xml") in installed
    assert (REPO / "resource" / PACKAGE).is_file()


def test_setup_cfg_puts_scripts_where_ros2_run_looks():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg.get("install", "install_scripts") == f"$base/lib/{PACKAGE}"
    assert cfg.get("develop", "script_dir") == f"$base/lib/{PACKAGE}"


# ----------------------------------------------------------------------------- package.xml
def _manifest() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def _manifest_depends(kinds: tuple[str, ...]) -> set[str]:
    root = _manifest()
    return {el.text.strip() for kind in kinds for el in root.findall(kind) if el.text}


def test_package_xml_is_ament_python_format3():
    root = _manifest()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.findtext("version") == SETUP["version"], "package.xml and setup.py versions differ"
    assert root.findtext("license") == SETUP["license"]
    assert root.find("maintainer") is not None and root.find("maintainer").get("email")
    assert root.findtext("export/build_type") == "ament_python"
    for kind in ("depend", "exec_depend", "build_depend", "test_depend"):
        for el in root.findall(kind):
            assert el.text and el.text.strip() == el.text.strip().strip("<>"), kind


def test_package_xml_has_a_rosdep_key_for_every_import():
    runtime = _manifest_depends(("depend", "exec_depend"))
    missing = []
    # third-party imports of the ROS package (optional ones behind try/except ImportError
    # are allowed to lack a key: the node works without them)
    stdlib = set(sys.stdlib_module_names)
    for path in _python_files(PACKAGE):
        for name, line, optional in imported_modules(path.read_text(encoding="utf-8"), str(path)):
            if name in stdlib or name in LOCAL_PACKAGES or optional:
                continue
            keys = ROSDEP_KEYS.get(name)
            where = f"{path.relative_to(REPO)}:{line}"
            if keys is None:
                missing.append(f"{where}: import {name}: no known rosdep key (see ROSDEP_KEYS)")
            elif name not in PIP_ONLY and not runtime & set(keys):
                missing.append(f"{where}: import {name} needs <exec_depend>{keys[0]}")
    # runtime requirements of bevanet_core, which the node imports
    for req in SETUP["install_requires"]:
        dist = req.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip().lower()
        module = REQUIREMENT_IMPORTS.get(dist)
        assert module, f"setup.py requirement {req!r}: add it to REQUIREMENT_IMPORTS"
        if module not in PIP_ONLY and not runtime & set(ROSDEP_KEYS[module]):
            missing.append(f"setup.py requires {req}: needs <exec_depend>{ROSDEP_KEYS[module][0]}")
    assert not missing, "package.xml lacks rosdep keys:\n" + "\n".join(missing)
    invented = sorted(key for key in runtime if key.endswith("-pip") and key != "python3-onnxruntime-pip")
    assert not invented, f"package.xml names rosdep keys that rosdistro does not have: {invented}"
    assert "python3-pytest" in _manifest_depends(("test_depend", "depend"))


# ----------------------------------------------------------------------------- console scripts
def test_console_scripts_are_declared():
    assert "segmentation_node" in CONSOLE_SCRIPTS
    assert "bevanet-demo" in CONSOLE_SCRIPTS
    for name, target in CONSOLE_SCRIPTS.items():
        module, _, func = target.partition(":")
        assert module and func and "." in module, f"{name} = {target!r}: not 'pkg.module:func'"


@pytest.mark.parametrize("name", sorted(CONSOLE_SCRIPTS))
def test_console_script_target_is_importable(name):
    module_name, _, func_name = CONSOLE_SCRIPTS[name].partition(":")
    module_file = REPO / (module_name.replace(".", "/") + ".py")
    assert module_file.is_file(), f"console script {name}: {module_file.relative_to(REPO)} missing"
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    assert callable(func), f"console script {name}: {module_name} has no callable {func_name}()"


# ----------------------------------------------------------------------------- installed layout
def _install_prefix() -> Path:
    marker = Path("share") / "ament_index" / "resource_index" / "packages" / PACKAGE
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / marker).is_file():
            return Path(entry)
    pytest.fail(
        f"no prefix on AMENT_PREFIX_PATH={os.environ.get('AMENT_PREFIX_PATH', '')!r}"
        f" holds {marker}:"
        " run these checks through `colcon test` after `colcon build` (see .ci/run)"
    )


@pytest.mark.installed
def test_installed_share_files():
    prefix = _install_prefix()
    share = prefix / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    sources = _share_sources()
    for folder in SHARE_FOLDERS:
        assert any(p.parts[0] == folder for p in sources), f"{folder}/ is empty in the source"
    for rel in sources:
        assert (share / rel).is_file(), f"{rel} not installed at {share / rel}"
        assert (share / rel).read_bytes() == (REPO / rel).read_bytes(), f"{share / rel} differs"


@pytest.mark.installed
def test_installed_console_scripts():
    prefix = _install_prefix()
    # setuptools writes either a direct `from module import func` wrapper or an
    # easy-install stub that looks the name up in the installed entry_points.txt
    installed_entry_points = "".join(
        p.read_text(encoding="utf-8")
        for p in prefix.glob(f"lib/python3*/site-packages/{PACKAGE}-*info/entry_points.txt")
    ).replace(" ", "")
    for name, target in CONSOLE_SCRIPTS.items():
        script = prefix / "lib" / PACKAGE / name
        assert script.is_file(), f"console script {name} not installed at {script}"
        assert os.access(script, os.X_OK), f"{script} is not executable"
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!") and "python" in text.splitlines()[0], script
        assert target.split(":")[0] in text or (name in text and f"{name}={target}" in installed_entry_points), (
            f"{script} does not lead to {target}"
        )


@pytest.mark.installed
def test_installed_packages_import_from_the_prefix(tmp_path):
    prefix = _install_prefix()
    site = sorted(prefix.glob("lib/python3*/site-packages"))
    assert site, f"no lib/python3*/site-packages under {prefix}"
    for top in LOCAL_PACKAGES:
        assert (site[0] / top / "__init__.py").is_file(), f"{top} not installed in {site[0]}"
    assert (site[0] / "bevanet_core" / "models" / "bevanet.py").is_file()
    pythonpath = os.pathsep.join([str(site[0]), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=pythonpath)
    code = (
        "import bevanet_core, bevanet_core.models, bevanet_ros\n"
        "from bevanet_core.models import build_model\n"
        "print(bevanet_core.__file__)\n"
    )
    # run outside the source tree so that only the installed copy can be found first
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().is_relative_to(prefix.resolve()), out.stdout


@pytest.mark.installed
def test_installed_package_is_in_the_ament_index():
    prefix = _install_prefix()
    ament_index = pytest.importorskip("ament_index_python", reason="ament_index_python missing")
    assert Path(ament_index.get_package_prefix(PACKAGE)).resolve() == prefix.resolve()
    share = Path(ament_index.get_package_share_directory(PACKAGE))
    assert (share / "package.xml").is_file()
    assert PACKAGE in ament_index.get_packages_with_prefixes()
