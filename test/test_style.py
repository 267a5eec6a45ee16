"""The ament style checks as tests: flake8, pep257 and package.xml validity."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO

PY_PATHS = ['motionseg_ros', 'test', 'scripts', 'launch', 'setup.py']


def _ament(module: str, args: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', module, *args], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)


def test_flake8():
    pytest.importorskip('ament_flake8')
    paths = [p for p in PY_PATHS if (REPO / p).exists()]
    res = _ament('ament_flake8.main', ['--linelength', '99', *paths])
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]


def test_pep257():
    pytest.importorskip('ament_pep257')
    paths = [p for p in ['motionseg_ros', 'scripts', 'launch'] if (REPO / p).exists()]
    # ament's convention, but the summary may sit on the first line (D213 off), as in PEP 257.
    res = _ament('ament_pep257.main', ['--add-ignore', 'D213', '--', *paths])
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]


def test_ruff():
    ruff = shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff not installed')
    res = subprocess.run([ruff, 'check', '--no-cache', '.'], cwd=str(REPO),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-5000:]


def test_package_xml_format3():
    from catkin_pkg.package import parse_package
    pkg = parse_package(str(REPO / 'package.xml'))  # raises InvalidPackage on schema errors
    pkg.validate()
    assert pkg.package_format == 3
    assert pkg.name == 'motionseg_ros'
    assert pkg.get_build_type() == 'ament_cmake'
    runtime = {d.name for d in pkg.exec_depends} | {d.name for d in pkg.build_export_depends}
    for dep in ('rclpy', 'sensor_msgs', 'std_msgs', 'builtin_interfaces',
                'rosidl_default_runtime', 'visualization_msgs', 'diagnostic_msgs'):
        assert dep in runtime or dep in {d.name for d in pkg.depends}, dep
    assert 'rosidl_interface_packages' in [g.name for g in pkg.member_of_groups]


def test_package_xml_is_well_formed_with_schema_reference():
    from xml.etree import ElementTree
    text = (REPO / 'package.xml').read_text()
    assert 'package_format3.xsd' in text
    root = ElementTree.fromstring(text.encode())
    assert root.tag == 'package' and root.get('format') == '3'
