"""`bevanet-launch`: run a launch file as `ros2 launch` does, where ros2cli is not installed.

    bevanet-launch segmentation.launch.py camera_topics:=/camera/image_raw namespace:=perception
    bevanet-launch bevanet_ros segmentation.launch.py variant:=bevanet_s
    bevanet-launch ./my.launch.py --show-args

The launch file is a path, or a file name in this package's share/launch folder (found through
the ament index, as FindPackageShare finds it). Like `ros2 launch` it builds a
`launch.LaunchService` and runs it in the main thread until the processes exit or Ctrl-C.
Unlike `ros2 launch`, an argument that the launch file does not declare is refused by name
instead of being ignored, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import argparse
import os
import sys

PACKAGE = "bevanet_ros"


def _missing(err: ImportError) -> int:
    print(
        f"bevanet-launch: error: needs the ROS 2 `launch` and `launch_ros` packages ({err}); source a "
        "ROS 2 installation, or run scripts/bootstrap.sh beside ../shared/ros-src",
        file=sys.stderr,
    )
    return 2


def find_launch_file(package: str | None, name: str) -> str:
    """A path as given, else <share of package>/launch/<name>. Raises FileNotFoundError."""
    if package is None and os.path.isfile(name):
        return os.path.abspath(name)
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    pkg = package or PACKAGE
    try:
        share = get_package_share_directory(pkg)
    except PackageNotFoundError:
        raise FileNotFoundError(
            f"package {pkg!r} is not on AMENT_PREFIX_PATH "
            f"({os.environ.get('AMENT_PREFIX_PATH', '')!r}); source its install/setup.bash"
        ) from None
    path = os.path.join(share, "launch", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no launch file {name!r} in {os.path.join(share, 'launch')}")
    return path


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """['a:=1', 'b:=x'] -> {'a': '1', 'b': 'x'}; anything else raises ValueError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments are NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bevanet-launch", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("target", nargs="+", help="[PACKAGE] LAUNCH_FILE [NAME:=VALUE ...]")
    p.add_argument("--show-args", action="store_true", help="list the declared arguments")
    p.add_argument("--debug", action="store_true", help="launch's debug logging")
    args = p.parse_args(argv)
    try:
        import launch_ros  # noqa: F401  (the launch files use it; fail here, clearly)
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import AnyLaunchDescriptionSource

        import launch
    except ImportError as err:
        return _missing(err)

    rest = list(args.target)
    package = None
    if len(rest) > 1 and ":=" not in rest[1]:
        package = rest.pop(0)
    name, assignments = rest[0], rest[1:]
    try:
        path = find_launch_file(package, name)
        values = parse_launch_arguments(assignments)
    except (FileNotFoundError, ValueError) as err:
        print(f"bevanet-launch: error: {err}", file=sys.stderr)
        return 2

    source = AnyLaunchDescriptionSource(path)
    try:
        declared = source.try_get_launch_description_without_context().get_launch_arguments()
    except Exception as err:  # noqa: BLE001 - a broken launch file is reported, not raised
        print(f"bevanet-launch: error: cannot load {path}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if args.show_args:
        for arg in declared:
            default = arg.default_value
            shown = (
                "".join(getattr(s, "text", "<substitution>") for s in default) if default is not None else "(required)"
            )
            print(f"{arg.name}:\n    {arg.description}\n    (default: {shown!r})")
        return 0
    names = {arg.name for arg in declared}
    unknown = sorted(set(values) - names)
    if unknown:
        print(
            f"bevanet-launch: error: {os.path.basename(path)} declares no argument "
            + ", ".join(repr(u) for u in unknown)
            + "; it declares: "
            + ", ".join(sorted(names)),
            file=sys.stderr,
        )
        return 2

    service = launch.LaunchService(argv=assignments, debug=args.debug)
    service.include_launch_description(
        launch.LaunchDescription([IncludeLaunchDescription(source, launch_arguments=list(values.items()))])
    )
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
