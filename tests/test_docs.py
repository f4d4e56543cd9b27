"""Docs stay true: the README opens with the two commands, docker-compose matches the documented URL."""

from __future__ import annotations

import re

import yaml
from conftest import REPO_ROOT
from sqlalchemy.engine import make_url


def test_readme_opens_with_the_two_commands() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    assert blocks[0].strip() == "pip install . && featurestore demo"
    assert blocks[1].strip() == 'pip install -e ".[dev]" && pytest'
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && pytest' in ci


def test_docker_compose_matches_documented_url() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["postgres"]
    assert svc["image"].startswith("postgres:18")
    env = svc["environment"]
    readme = (REPO_ROOT / "README.md").read_text()
    (documented,) = set(re.findall(r"FEATURESTORE_URL=(postgresql://\S+)", readme))
    url = make_url(documented)
    assert (url.username, url.password, url.database) == (
        env["POSTGRES_USER"],
        env["POSTGRES_PASSWORD"],
        env["POSTGRES_DB"],
    )
    host_port = int(svc["ports"][0].split(":")[0])
    assert url.port == host_port
    assert "healthcheck" in svc and svc["volumes"][0].split(":")[0] in compose["volumes"]


def test_docker_compose_citus_profile_is_a_coordinator_and_two_workers() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    citus = {name: svc for name, svc in compose["services"].items() if "citus" in svc.get("profiles", [])}
    assert set(citus) == {"citus-coordinator", "citus-worker-1", "citus-worker-2", "citus-setup"}
    assert all(svc["image"].startswith("citusdata/citus:") for svc in citus.values())
    assert "profiles" not in compose["services"]["postgres"]  # `docker compose up` stays one PostgreSQL
    setup = " ".join(citus["citus-setup"]["command"])
    assert "citus_set_coordinator_host('citus-coordinator'" in setup
    assert setup.count("citus_add_node(") == 2
    assert set(citus["citus-setup"]["depends_on"]) == {"citus-coordinator", "citus-worker-1", "citus-worker-2"}
    coordinator_port = int(citus["citus-coordinator"]["ports"][0].split(":")[0])
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"postgresql://featurestore:featurestore@localhost:{coordinator_port}/featurestore" in readme


def test_architecture_names_every_module() -> None:
    text = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for module in sorted((REPO_ROOT / "featurestore").glob("*.py")):
        if module.name != "__init__.py":
            assert module.name in text, f"docs/ARCHITECTURE.md does not mention {module.name}"


def _cli_rows() -> dict[str, str]:
    """README's CLI table: command path (e.g. 'views drop') -> the whole table row."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## CLI\n") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        m = re.match(r"\| `featurestore ((?:[a-z]+ ?)+)", line)
        if m:
            rows[m.group(1).strip()] = line
    return rows


def test_readme_cli_table_lists_every_command_and_every_option() -> None:
    import click

    from featurestore.cli import cli

    rows = _cli_rows()

    def walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
        out: list[tuple[str, click.Command]] = []
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                out.extend(walk(cmd, f"{prefix}{name} "))
            else:
                out.append((f"{prefix}{name}", cmd))
        return out

    commands = walk(cli)
    assert len(commands) >= 13
    for name, cmd in commands:
        assert name in rows, f"README's CLI table has no row for `featurestore {name}`"
        for param in cmd.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    assert f"`{opt}" in rows[name] or f"/`{opt}" in rows[name], (
                        f"README's CLI row for `featurestore {name}` omits {opt}"
                    )
    text = (REPO_ROOT / "README.md").read_text()
    for param in cli.params:  # the global options
        for opt in param.opts:
            assert f"`{opt}" in text, f"README omits the global option {opt}"
    assert "**Exit status.**" in text and "3 `featurestore server status`" in text


def test_readme_lists_every_indicator_and_transform() -> None:
    """README's indicator table is generated from the registry (python docs/indicators.py --write)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("indicators_doc", REPO_ROOT / "docs" / "indicators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (REPO_ROOT / "README.md").read_text()
    assert module.table() in text, "README's indicator table is stale: run python docs/indicators.py --write"
