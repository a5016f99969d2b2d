#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment at <repo>/.venv.
#
# Fresh Debian/Ubuntu machine, Python 3.11, no ROS:
#   venv from python3.11, torch==2.13.0, this package editable with its extras,
#   and the ROS 2 Python wheels from PyPI (rclpy + Fast DDS + message packages).
# ROS 2 already sourced (ROS_DISTRO set and the system python imports rclpy):
#   venv with --system-site-packages from that python, no ROS wheels installed.
#
# A second run with nothing changed returns in well under a second: the stamp file
# .venv/.bootstrap-stamp holds a hash of setup.py, this script, the mode and the python.
#
# It prints one line per step, with how long the step usually takes and how long it took; what
# pip, the compilers and colcon print goes to .venv/bootstrap.log (appended, one header per step),
# and a failing step shows the log's last lines and names the file.
#
# ROS 2 pieces PyPI lacks (launch, launch_ros, vision_msgs, composition_interfaces,
# diagnostic_updater, and the `ros2` command line, ros2cli, as .venv/bin/ros2): where
# <repo>/../shared/ros-src/build.sh exists (or $BEVANET_ROS_SRC names such a folder) and ROS is
# not sourced, they are built into .venv/ros-src once (a no-op when done) and scripts/test.sh
# sources .venv/ros-src/env.bash. Without them the `ros2` journey, launch-file and LabelInfo
# tests skip and say why.
#
# Environment:
#   BEVANET_PYTHON   interpreter to build the venv from (default: python3.11; with ROS
#                    sourced, the first of /usr/bin/python3, python3 that imports rclpy)
#   BEVANET_FORCE=1  reinstall even when the stamp matches
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.bootstrap-stamp"
TORCH_PIN="torch==2.13.0"
EXTRAS="onnx,openvino,train,foxglove,video,test"
# rclpy pulls rcl, rmw, rosidl runtimes and ros-wheels-bootstrapper (sets LD_LIBRARY_PATH
# through a .pth file); an rmw implementation and the message packages the node uses are
# not pulled by rclpy itself, so they are named here.
ROS_WHEELS=(
    ros-rclpy
    ros-rmw-fastrtps-cpp
    ros-sensor-msgs
    ros-std-msgs
    ros-diagnostic-msgs
    ros-lifecycle-msgs
    ros-rcl-interfaces
    ros-builtin-interfaces
)

LOG="$VENV/bootstrap.log"
log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }
# step WHAT USUALLY CMD...: one line (what, how long it usually takes, how long it took); the
# output of CMD goes to $LOG; on failure the log's last lines are shown and the script stops
step() {
    local what="$1" usually="$2" t=$SECONDS
    shift 2
    mkdir -p "$VENV"
    printf '\n===== %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$what" >>"$LOG"
    printf '[bootstrap] %s (usually %s) ...' "$what" "$usually"
    if "$@" >>"$LOG" 2>&1; then
        printf ' %d s\n' "$((SECONDS - t))"
        return 0
    fi
    printf ' FAILED after %d s\n' "$((SECONDS - t))"
    printf '[bootstrap] the last lines of %s:\n' "$LOG" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    die "$what failed; its whole output is in $LOG"
}

# ---------------------------------------------------------------- choose the mode
ros_python=""
if [[ -n "${ROS_DISTRO:-}" ]]; then
    for cand in ${BEVANET_PYTHON:-/usr/bin/python3 python3}; do
        if command -v "$cand" >/dev/null 2>&1 \
            && env -u VIRTUAL_ENV "$cand" -c 'import rclpy' >/dev/null 2>&1; then
            ros_python="$(command -v "$cand")"
            break
        fi
    done
    if [[ -z "$ros_python" ]]; then
        log "ROS_DISTRO=$ROS_DISTRO is set but no system python3 imports rclpy:" \
            "ignoring it and installing the ROS 2 wheels from PyPI"
    fi
fi

if [[ -n "$ros_python" ]]; then
    MODE="ros-system:$ROS_DISTRO"
    PY="$ros_python"
else
    MODE="ros-wheels"
    PY="${BEVANET_PYTHON:-python3.11}"
    if ! command -v "$PY" >/dev/null 2>&1; then
        die "'$PY' not found. Install Python 3.11 first, e.g. 'sudo apt-get install python3.11 python3.11-venv'" \
            "(Debian 12 / Ubuntu 22.04+; the ROS 2 wheels from PyPI are built for CPython 3.11)," \
            "or point BEVANET_PYTHON at a Python 3.11 interpreter."
    fi
    pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
        || die "'$PY' does not run as a Python interpreter; set BEVANET_PYTHON to a Python 3.11"
    if [[ "$pyver" != "3.11" ]]; then
        die "'$PY' is Python $pyver; the ROS 2 wheels from PyPI need Python 3.11." \
            "Install it ('sudo apt-get install python3.11 python3.11-venv') or set BEVANET_PYTHON."
    fi
fi

# venv without ensurepip is Debian's split python3.X-venv package
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    die "'$PY' has no working venv/ensurepip module. Install it: 'sudo apt-get install python${pyver}-venv'"
fi

py_id="$("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"
hash_input="$(cat "$REPO/setup.py" "$REPO/scripts/bootstrap.sh"; echo "$MODE"; echo "$py_id")"
WANT="$(printf '%s' "$hash_input" | sha256sum | cut -d' ' -f1)"

# ---------------------------------------------------------------- ROS 2 sources PyPI lacks
ROS_SRC="${BEVANET_ROS_SRC:-$REPO/../shared/ros-src}"
ros_src_step() {
    if [[ -n "$ros_python" ]]; then
        return 0  # a sourced ROS 2 brings launch, launch_ros and vision_msgs itself
    fi
    if [[ ! -f "$ROS_SRC/build.sh" ]]; then
        log "no $ROS_SRC/build.sh: launch, launch_ros and vision_msgs are not installed" \
            "(their tests skip)"
        return 0
    fi
    local tool
    for tool in cmake gcc g++; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            log "$tool is missing, so launch, launch_ros and vision_msgs are not built from" \
                "$ROS_SRC (their tests skip); install it: 'sudo apt-get install cmake build-essential'"
            return 0
        fi
    done
    if [[ -f "$VENV/ros-src/.ros-src-stamp" ]]; then
        # built before: build.sh checks its stamp and returns at once unless the sources changed
        local t=$SECONDS
        if ! bash "$ROS_SRC/build.sh" "$VENV" "$VENV/ros-src" >>"$LOG" 2>&1; then
            tail -n 30 "$LOG" | sed 's/^/    /' >&2
            die "rebuilding the ROS 2 sources from $ROS_SRC failed; its whole output is in $LOG"
        fi
        if (( SECONDS - t > 2 )); then
            log "rebuilt the ROS 2 sources from $ROS_SRC (they changed) in $((SECONDS - t)) s"
        fi
    else
        step "building launch, launch_ros, vision_msgs, composition_interfaces, diagnostic_updater and ros2cli from $ROS_SRC" \
            "4 to 5 min on 2 cores" bash "$ROS_SRC/build.sh" "$VENV" "$VENV/ros-src"
    fi
    [[ -f "$VENV/ros-src/env.bash" ]] || die "$ROS_SRC/build.sh wrote no $VENV/ros-src/env.bash (see $LOG)"
    [[ -x "$VENV/bin/ros2" ]] || log "$ROS_SRC/build.sh installed no $VENV/bin/ros2: the ros2 journey tests skip"
}

if [[ "${BEVANET_FORCE:-0}" != 1 && -x "$VENV/bin/python" && -f "$STAMP" \
      && "$(cat "$STAMP")" == "$WANT" ]]; then
    ros_src_step
    log "up to date ($MODE, $VENV)"
    exit 0
fi

t0=$SECONDS
log "setting up $VENV ($MODE, $py_id); what the tools print goes to $LOG"

# ---------------------------------------------------------------- the venv itself
want_sys="false"
[[ -n "$ros_python" ]] && want_sys="true"
if [[ -x "$VENV/bin/python" ]]; then
    have_sys="$(sed -n 's/^include-system-site-packages *= *//p' "$VENV/pyvenv.cfg" 2>/dev/null || true)"
    have_py="$(readlink -f "$VENV/bin/python" 2>/dev/null || true)"
    want_py="$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
    if [[ "$have_sys" != "$want_sys" || "$have_py" != "$want_py" ]]; then
        log "existing venv was made differently (system-site-packages=$have_sys, python=$have_py): recreating"
        rm -rf "$VENV"
    fi
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    venv_args=()
    [[ -n "$ros_python" ]] && venv_args+=(--system-site-packages)
    step "creating the venv" "5 to 10 s" "$PY" -m venv "${venv_args[@]}" "$VENV"
fi
rm -f "$STAMP"   # a half-finished install must not look finished

VPY="$VENV/bin/python"
pip_() { "$VPY" -m pip --disable-pip-version-check --no-input "$@"; }

step "upgrading pip" "5 s" pip_ install --upgrade pip

# ---------------------------------------------------------------- torch, pinned
# The pin matters: a loose 'torch' takes the registry's newest build with GBs of CUDA
# packages; 2.13.0 resolves to the CPU build on CPU-only machines.
step "installing $TORCH_PIN" "1 min, plus the download of the wheel" pip_ install "$TORCH_PIN"
torch_ver="$("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
# everything after this must keep exactly this torch
CONSTRAINTS="$VENV/constraints.txt"
printf 'torch==%s\n' "$torch_ver" >"$CONSTRAINTS"

# ---------------------------------------------------------------- this package
step "installing bevanet_ros -e .[$EXTRAS] with torch $torch_ver" "1 min, plus downloads" \
    pip_ install -c "$CONSTRAINTS" -e "$REPO[$EXTRAS]"

# ---------------------------------------------------------------- ROS 2
if [[ -z "$ros_python" ]]; then
    step "installing the ROS 2 Python wheels (rclpy, Fast DDS, messages)" "15 to 30 s" \
        pip_ install -c "$CONSTRAINTS" "${ROS_WHEELS[@]}"
else
    log "using the sourced ROS 2 $ROS_DISTRO from $ros_python (no ROS wheels installed)"
fi

# ---------------------------------------------------------------- checks
if [[ "$torch_ver" == *+cpu ]] && "$VPY" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -i -E '^nvidia-|^cuda-|^triton ' ; then
    die "CUDA packages were pulled next to a CPU torch ($torch_ver): some requirement asked for a loose torch"
fi
import_check() {
    "$VPY" - <<'EOF'
import torch, numpy, cv2, safetensors, yaml, PIL  # noqa: F401
import onnx, onnxruntime, openvino  # noqa: F401
import bevanet_core, bevanet_ros  # noqa: F401
import rclpy
rclpy.init()
rclpy.shutdown()
print(f"[bootstrap] imports ok: torch {torch.__version__}, onnx {onnx.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
      f"rclpy {rclpy.__file__}")
EOF
}
step "checking that torch, onnxruntime, openvino, rclpy and the package import" "5 to 10 s" import_check

ros_src_step

echo "$WANT" >"$STAMP"
log "done in $((SECONDS - t0)) s"
