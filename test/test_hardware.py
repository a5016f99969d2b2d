"""Precision by hardware: bf16 only where the CPU computes it natively."""

import warnings

import pytest

from bevanet_core import hardware
from bevanet_core.hardware import parse_cpuinfo, resolve_precision

XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""
EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni
"""
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma f16c
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve bf16 i8mm
"""


@pytest.fixture(autouse=True)
def _fresh_warning_state(monkeypatch):
    monkeypatch.setattr(hardware, "_warned", False)


@pytest.mark.parametrize(
    "text, expected",
    [(XEON_AMX, "bf16"), (EPYC_ZEN4, "bf16"), (EPYC_AVX2, "fp32"), (GRAVITON3, "bf16"), ("", "fp32")],
    ids=["xeon-amx", "epyc-avx512-bf16", "epyc-avx2-only", "arm-bf16", "no-cpuinfo"],
)
def test_auto_picks_bf16_only_where_it_is_native(text, expected):
    cpu = parse_cpuinfo(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        assert resolve_precision("auto", "cpu", cpu) == expected


def test_explicit_bf16_without_native_support_warns_once_naming_the_cpu():
    cpu = parse_cpuinfo(EPYC_AVX2)
    with pytest.warns(RuntimeWarning) as caught:
        assert resolve_precision("bf16", "cpu", cpu) == "bf16"  # honoured, not overridden
    message = str(caught[0].message)
    assert "AMD EPYC 7B12" in message and "avx2" in message and "11.5x" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_precision("bf16", "cpu", cpu)  # only once per process
        assert resolve_precision("bf16", "cpu", parse_cpuinfo(XEON_AMX)) == "bf16"
        assert resolve_precision("fp32", "cpu", cpu) == "fp32"


def test_cuda_auto_prefers_bf16_then_fp16_and_keeps_explicit_choices():
    assert resolve_precision("auto", "cuda", cuda_bf16=True) == "bf16"
    assert resolve_precision("auto", "cuda", cuda_bf16=False) == "fp16"
    assert resolve_precision("fp32", "cuda", cuda_bf16=True) == "fp32"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, got 'int4'"):
        resolve_precision("int4", "cpu", parse_cpuinfo(EPYC_AVX2))


def test_cpu_description_names_model_and_simd_flags():
    assert parse_cpuinfo(XEON_AMX).describe() == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz "
        "(amx_bf16, amx_int8, amx_tile, avx, avx2, avx512_bf16, "
        "avx512_vnni, avx512bw, avx512f)"
    )


def test_every_recipe_defaults_to_auto():
    from pathlib import Path

    import yaml

    from bevanet_core.training.config import RunConfig

    assert RunConfig().precision == "auto"
    recipes = sorted((Path(__file__).resolve().parents[1] / "training").glob("*.yaml"))
    assert recipes
    for path in recipes:
        run = (yaml.safe_load(path.read_text()) or {}).get("run", {})
        assert run.get("precision", "auto") == "auto", path.name


def test_training_resolves_auto_for_this_machine(shared_data, tmp_path):
    import yaml

    from bevanet_core.training.config import load_config
    from bevanet_core.training.engine import train

    root = shared_data / "camvid"
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            "data.train_list=train.lst",
            "data.val_list=val.lst",
            "data.base_size=128",
            "data.crop_size=[128,96]",
            "data.workers=0",
            "optim.batch_size=2",
            "optim.iterations=1",
            f"run.out_dir={tmp_path}",
            "run.val_every=0",
            "run.val_limit=1",
            "run.threads=1",
            "run.precision=auto",
        ],
    )
    train(cfg)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())["run"]["precision"]
    assert written == ("bf16" if hardware.cpu_info().native_bf16 else "fp32")
