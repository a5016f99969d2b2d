"""bevanet_ros: one ament_python package holding `bevanet_core` (no ROS) and `bevanet_ros` (nodes).

Works both under `colcon build` (ROS 2) and `pip install -e .` (no ROS, offline training).
"""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "bevanet_ros"


def data_files():
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for folder in ("launch", "config", "bags", "training"):
        for path in sorted(glob(f"{folder}/**/*", recursive=True)):
            if os.path.isfile(path):
                files.append((os.path.join("share", PACKAGE, os.path.dirname(path)), [path]))
    return files


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["bevanet_core", "bevanet_core.*", "bevanet_ros", "bevanet_ros.*"]),
    package_data={"bevanet_core": ["weights/*.safetensors", "weights/*.json", "weights/int8_frames/*/*.jpg"]},
    data_files=data_files(),
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "torch==2.13.0",
        "safetensors",
        "pillow",
        "pyyaml",
        "opencv-python-headless",
        # reading and writing bags is a core use (bevanet-bag-eval, bevanet-demo)
        "rosbags",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "openvino": ["openvino"],
        "train": ["tensorboard", "tqdm", "matplotlib"],
        "foxglove": ["foxglove-sdk"],
        # H.264 overlay videos (libx264 inside PyAV's wheels); without it they are mp4v
        "video": ["av"],
        "test": ["pytest", "websockets"],
    },
    zip_safe=True,
    maintainer="bevanet_ros developers",
    maintainer_email="bevanet-ros@users.noreply.github.com",
    description=("BEVANet real-time semantic segmentation for ROS 2 (TensorRT, ONNX Runtime, OpenVINO, PyTorch)"),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # ROS 2 nodes (ros2 run bevanet_ros <name>)
            "segmentation_node = bevanet_ros.segmentation_node:main",
            "segmentation_lifecycle_node = bevanet_ros.lifecycle_segmentation_node:main",
            "component_container = bevanet_ros.component_container:main",
            "bag_player = bevanet_ros.bag_player:main",
            # offline tools (no ROS needed)
            "bevanet-train = bevanet_core.cli.train:main",
            "bevanet-eval = bevanet_core.cli.evaluate:main",
            "bevanet-calibrate = bevanet_core.cli.calibrate:main",
            "bevanet-mine = bevanet_core.cli.mine:main",
            "bevanet-finetune-data = bevanet_core.cli.finetune_data:main",
            "bevanet-pretrain = bevanet_core.cli.pretrain:main",
            "bevanet-speed = bevanet_core.cli.speed:main",
            "bevanet-predict = bevanet_core.cli.predict:main",
            "bevanet-pseudo-label = bevanet_core.cli.pseudo_label:main",
            "bevanet-export = bevanet_core.cli.export:main",
            "bevanet-bench = bevanet_core.cli.bench:main",
            "bevanet-make-bag = bevanet_core.cli.make_bag:main",
            "bevanet-rviz-config = bevanet_core.cli.rviz_config:main",
            "bevanet-bag-eval = bevanet_ros.tools:bag_eval_main",
            "bevanet-demo = bevanet_ros.tools:demo_main",
        ],
    },
)
