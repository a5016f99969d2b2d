"""bevanet-rviz-config: the RViz2 view of the segmentation node that a launch line starts (no ROS needed).

    bevanet-rviz-config namespace:=perception camera_topics:=/front/image_raw,/rear/image_raw --out seg.rviz
    bevanet-rviz-config camera_topics:=/camera/image_raw input_transport:=compressed > seg.rviz
    rviz2 -d seg.rviz

It takes the arguments of `segmentation.launch.py`, as NAME:=VALUE, and writes the view that
`rviz:=true` on that launch line writes and opens: per camera the camera (raw, or its
/compressed topic), the overlay, the colour mask, the mask and the confidence, under the topic
names the node gives them. Without --out the view goes to stdout. Parameters come from
config/segmentation.yaml of the installed package (or `params_file:=`), as in the launch file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..bags.replay_plan import refuse_undeclared
from ..serving import rviz_config
from ..serving.launch_plan import LAUNCH_ARGUMENTS, PACKAGE, PARAMS_FILE, default_arguments, plan_launch
from .args import add, make_parser
from .validate import check_output_file

PROG = "bevanet-rviz-config"
NAMES = [name for name, _, _ in LAUNCH_ARGUMENTS]


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        PROG,
        __doc__.split("\n\n")[0],
        epilog="Launch arguments: " + ", ".join(NAMES) + " (ros2 launch bevanet_ros segmentation.launch.py "
        "--show-args describes them).",
    )
    p.add_argument(
        "arguments",
        nargs="*",
        metavar="NAME:=VALUE",
        help="arguments of segmentation.launch.py (namespace, node_name, camera_topics, camera_names, "
        "input_transport, params_file, ...), as on the launch line",
    )
    add(p, "out", metavar="FILE", help="the .rviz file to write (default: stdout)")
    p.add_argument(
        "--fixed-frame",
        default=rviz_config.FIXED_FRAME,
        metavar="FRAME",
        help="RViz's fixed frame (the image displays need no transform; TF displays added later do)",
    )
    return p


def share_dir() -> Path | None:
    """The package share holding config/segmentation.yaml: a colcon install's on
    AMENT_PREFIX_PATH (as FindPackageShare finds it), else the source tree this module runs
    from, else <prefix>/share/bevanet_ros (pip)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [Path(p) / "share" / PACKAGE for p in prefixes]
    candidates += [Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / PACKAGE]
    return next((c for c in candidates if (c / "config" / PARAMS_FILE).is_file()), None)


def launch_values(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, str]:
    """{name: value} of the launch file's defaults, updated with NAME:=VALUE items."""
    values = default_arguments()
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            parser.error(f"{item!r} is not NAME:=VALUE (e.g. namespace:=perception)")
    try:
        refuse_undeclared(items, NAMES, "segmentation.launch.py")
    except ValueError as err:
        parser.error(str(err))
    values.update(item.partition(":=")[::2] for item in items)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = launch_values(parser, args.arguments)
    check_output_file(parser, "--out", args.out)
    share = share_dir()
    if share is None and not values.get("params_file", "").strip():
        parser.error(f"config/{PARAMS_FILE} of {PACKAGE} was not found (is the package installed?); give params_file:=")
    try:
        plan = plan_launch(values, str(share or ""))
    except ValueError as err:
        parser.error(str(err))
    text = rviz_config.render(plan.settings, plan.namespace, plan.node_name, args.fixed_frame)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        rviz_config.write(args.out, text)
    except OSError as err:
        print(f"{PROG}: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    shown = len(rviz_config.image_views(plan.settings, plan.namespace, plan.node_name))
    node = rviz_config.expand_topic_name("~", plan.namespace, plan.node_name)
    print(f"wrote {args.out}: {shown} image displays of {node} (rviz2 -d {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
