"""What requests do to security groups and their rules, which groups a
port is in, and how the rules reach the nodes.

**Ownership.**  A group belongs to a project: the callers acting in that
project (their token's scope) see and change it; administrators any.  Every
project has one group named ``default``, made on first use with Neutron's
default rules (everything out; in from the group's own members); it cannot
be renamed, and only an administrator deletes it.  A name ``default`` for
another group is 409, as Neutron answers.

**Limits.**  Neutron's defaults per project: 10 groups, 100 rules (409
over them, nothing made).

**Ports.**  A port with port security is in the groups it names (each of
its project's; 404 otherwise), or in its project's default group when it
names none; a port without port security is in none (naming groups then
is 400 on create, 409 on update).  A group in use by a port cannot be
deleted (409).

**Nodes.**  A server's ports' rules are instance tags in Ganeti
(:func:`snfd.cyclades.networks.security.node_tags`), which the node-side
NIC scripts turn into nftables rules when a NIC comes up, and again on a
running server after the no-op modify job :meth:`SecurityGroups.deliver`
submits (its post hooks run ``snfd.netnode refresh``).  What changes which
servers' tags: a port's groups or addresses (its server, and the servers
of ports in groups whose rules name those groups as remote), a group's
rules (the servers of its ports).  A server being made gets its tags in
its create job.  Delivery failures are logged; the database stays the
truth, and the next change or a ``deliver`` call puts the tags right.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import store as compute_store
from snfd.cyclades.model import GanetiBackend, Server
from snfd.cyclades.networks import security, security_store, store
from snfd.cyclades.networks.model import Port, SecurityGroup, SecurityRule
from snfd.cyclades.networks.security import MAX_GROUPS, MAX_RULES, RuleRequest
from snfd.ganeti.rapi import RapiError, RapiUnavailable

log = Logger(namespace="snfd.cyclades.networks.security_groups")

TAG_PREFIX = "snf:sg:"
DEFAULT = "default"


class SecurityGroups:
    """Security groups (see the module docstring).  ``rapi_target``: a
    backend -> the RAPI client for it (``GanetiNetworks._rapi``)."""

    def __init__(self, db: Any, rapi: Any):
        self._db = db
        self._rapi = rapi

    # -- reads ------------------------------------------------------------------------------

    async def groups(self, project: str, admin: bool = False) -> list[SecurityGroup]:
        """The project's groups (its default made if absent); every
        project's for an administrator."""
        await self.default_group(project)
        found: list[SecurityGroup] = await self._db.run(
            "cyclades.security_groups", security_store.groups_txn,
            None if admin else project)
        return found

    async def group(self, project: str, group_id: str, admin: bool = False) -> SecurityGroup:
        found: SecurityGroup | None = await self._db.run(
            "cyclades.security_group", security_store.group_txn, group_id)
        if found is None or not (admin or found.project == project):
            raise errors.NotFound(f"Security group {group_id[:40]} does not exist.")
        return found

    async def rules(self, project: str, admin: bool = False) -> list[SecurityRule]:
        await self.default_group(project)
        found: list[SecurityRule] = await self._db.run(
            "cyclades.security_rules",
            lambda txn: security_store.rules_txn(txn, project=None if admin else project))
        return found

    async def rule(self, project: str, rule_id: str, admin: bool = False) -> SecurityRule:
        found: SecurityRule | None = await self._db.run(
            "cyclades.security_rule", security_store.rule_txn, rule_id)
        if found is None or not (admin or found.project == project):
            raise errors.NotFound(f"Security group rule {rule_id[:40]} does not exist.")
        return found

    async def usage(self, project: str) -> tuple[int, int]:
        """How many groups and rules the project has."""
        def txn_(txn: Any) -> tuple[int, int]:
            return (security_store.count_groups_txn(txn, project),
                    security_store.count_rules_txn(txn, project))
        counts: tuple[int, int] = await self._db.run("cyclades.security_usage", txn_)
        return counts

    async def default_group(self, project: str) -> SecurityGroup:
        """The project's default group, made with its rules if absent."""
        found: SecurityGroup = await self._db.run("cyclades.security_default",
                                                  self.default_group_txn, project)
        return found

    @staticmethod
    def default_group_txn(txn: Any, project: str) -> SecurityGroup:
        found = security_store.default_group_txn(txn, project)
        if found is not None:
            return found
        group_id = str(uuid.uuid4())
        if security_store.insert_group_txn(txn, group_id, project, None, DEFAULT,
                                           "Default security group", is_default=True):
            for req in security.default_rules(group_id):
                security_store.insert_rule_txn(txn, str(uuid.uuid4()), group_id, project,
                                               **_rule_values(req))
        made = security_store.default_group_txn(txn, project)
        assert made is not None
        return made

    # -- groups -----------------------------------------------------------------------------

    async def create_group(self, user: str, project: str, name: str,
                           description: str = "") -> SecurityGroup:
        if name == DEFAULT:
            raise errors.Conflict("Default security group already exists.")
        await self.default_group(project)

        def txn_(txn: Any) -> SecurityGroup:
            txn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sg:{project}",))
            if security_store.count_groups_txn(txn, project) >= MAX_GROUPS:
                raise errors.Conflict(f"Quota exceeded for resources: ['security_group']"
                                      f" (at most {MAX_GROUPS} per project).")
            group_id = str(uuid.uuid4())
            security_store.insert_group_txn(txn, group_id, project, user, name, description)
            for ethertype in security.ETHERTYPES:
                security_store.insert_rule_txn(txn, str(uuid.uuid4()), group_id, project,
                                               direction="egress", ethertype=ethertype)
            made = security_store.group_txn(txn, group_id)
            assert made is not None
            return made
        group: SecurityGroup = await self._db.run("cyclades.create_security_group", txn_)
        return group

    async def update_group(self, project: str, group_id: str, admin: bool = False,
                           **fields: Any) -> SecurityGroup:
        group = await self.group(project, group_id, admin)
        if "name" in fields and fields["name"] != group.name and (
                group.is_default or fields["name"] == DEFAULT):
            raise errors.Conflict("Updating default security group not allowed."
                                  if group.is_default else
                                  "Default security group already exists.")
        updated: SecurityGroup | None = await self._db.run(
            "cyclades.update_security_group",
            lambda txn: security_store.update_group_txn(txn, group.id, **fields))
        assert updated is not None
        return updated

    async def delete_group(self, project: str, group_id: str, admin: bool = False) -> None:
        group = await self.group(project, group_id, admin)
        if group.is_default and not admin:
            raise errors.Conflict("Insufficient rights for removing default security group.")

        def txn_(txn: Any) -> list[int]:
            locked = security_store.group_txn(txn, group.id, for_update=True)
            if locked is None:
                raise errors.NotFound(f"Security group {group_id[:40]} does not exist.")
            if security_store.ports_in_txn(txn, [group.id]):
                raise errors.Conflict(f"Security Group {group.id} in use.")
            naming = [g for g in security_store.groups_naming_txn(txn, [group.id])
                      if g != group.id]
            servers = _servers_of(security_store.ports_in_txn(txn, naming))
            security_store.delete_group_txn(txn, group.id)
            return servers
        await self.deliver(await self._db.run("cyclades.delete_security_group", txn_))

    # -- rules ------------------------------------------------------------------------------

    async def create_rule(self, project: str, group_id: str, req: RuleRequest,
                          admin: bool = False) -> SecurityRule:
        group = await self.group(project, group_id, admin)

        def txn_(txn: Any) -> tuple[SecurityRule, list[int]]:
            locked = security_store.group_txn(txn, group.id, for_update=True)
            if locked is None:
                raise errors.NotFound(f"Security group {group_id[:40]} does not exist.")
            if req.remote_group_id is not None:
                remote = security_store.group_txn(txn, req.remote_group_id)
                if remote is None or not (admin or remote.project == group.project):
                    raise errors.NotFound(f"Security group {req.remote_group_id[:40]} does"
                                          " not exist.")
            for rule in locked.rules:
                if security.same_rule(rule, req):
                    raise errors.Conflict(f"Security group rule already exists. Rule id is"
                                          f" {rule.id}.")
            if security_store.count_rules_txn(txn, group.project) >= MAX_RULES:
                raise errors.Conflict(f"Quota exceeded for resources: ['security_group_rule']"
                                      f" (at most {MAX_RULES} per project).")
            made = security_store.insert_rule_txn(txn, str(uuid.uuid4()), group.id,
                                                  group.project, **_rule_values(req))
            return made, _servers_of(security_store.ports_in_txn(txn, [group.id]))
        rule, servers = await self._db.run("cyclades.create_security_rule", txn_)
        await self.deliver(servers)
        return rule

    async def delete_rule(self, project: str, rule_id: str, admin: bool = False) -> None:
        rule = await self.rule(project, rule_id, admin)

        def txn_(txn: Any) -> list[int]:
            security_store.delete_rule_txn(txn, rule.id)
            return _servers_of(security_store.ports_in_txn(txn, [rule.group_id]))
        await self.deliver(await self._db.run("cyclades.delete_security_rule", txn_))

    # -- ports ------------------------------------------------------------------------------

    def port_groups_txn(self, txn: Any, project: str, wanted: Iterable[str] | None,
                        port_security: bool, creating: bool = True) -> tuple[str, ...]:
        """The groups a port of ``project`` is in (see the module
        docstring): ``wanted`` checked, or the default group."""
        given = None if wanted is None else tuple(dict.fromkeys(wanted))
        if not port_security:
            if given:
                if creating:
                    raise errors.BadRequest("Port security must be enabled and port must"
                                            " have an IP address in order to use security"
                                            " groups.")
                raise errors.Conflict("Port has security group associated. Cannot disable"
                                      " port security until security group is removed.")
            return ()
        if given is None:
            return (self.default_group_txn(txn, project).id,)
        found = {g.id: g for g in security_store.groups_txn(txn, project=project, ids=given)}
        for group_id in given:
            if group_id not in found:
                raise errors.NotFound(f"Security group {group_id[:40]} does not exist.")
        return given

    def resolve_txn(self, txn: Any, project: str, refs: Iterable[str]) -> tuple[str, ...]:
        """Groups named by id or name (Nova's ``security_groups`` on a
        server): their ids; 400 for one the project lacks."""
        self.default_group_txn(txn, project)
        groups = security_store.groups_txn(txn, project=project)
        out = []
        for ref in refs:
            match = [g.id for g in groups if ref in (g.id, g.name)]
            if not match:
                raise errors.BadRequest(f"Security group {ref[:60]} not found for project"
                                        f" {project}.")
            if len(match) > 1:
                raise errors.Conflict(f"Multiple security groups are named {ref[:60]}; use"
                                      " its id.")
            out.append(match[0])
        return tuple(dict.fromkeys(out))

    async def resolve(self, project: str, refs: Iterable[str]) -> tuple[str, ...]:
        found: tuple[str, ...] = await self._db.run("cyclades.resolve_security_groups",
                                                    self.resolve_txn, project, list(refs))
        return found

    @staticmethod
    def affected_txn(txn: Any, ports: Iterable[Port]) -> list[int]:
        """The servers whose tags change when ``ports``' groups or addresses
        change: theirs, and those of ports in groups naming theirs as a
        remote."""
        ports = list(ports)
        groups = {g for p in ports for g in p.security_groups}
        naming = security_store.groups_naming_txn(txn, groups) if groups else []
        others = security_store.ports_in_txn(txn, naming) if naming else []
        return _servers_of([*ports, *others])

    # -- the nodes --------------------------------------------------------------------------

    @staticmethod
    def server_tags_txn(txn: Any, server_id: int) -> list[str]:
        """The security-group tags a server's instance should carry."""
        ports = [p for p in store.ports_txn(txn, device_ids=[server_id])
                 if p.state != "DELETING"]
        groups = {g for p in ports for g in p.security_groups}
        rules = security_store.rules_txn(txn, group_ids=groups) if groups else []
        remotes = {r.remote_group_id for r in rules if r.remote_group_id is not None}
        members: dict[str, list[str]] = {}
        for member in security_store.ports_in_txn(txn, remotes) if remotes else []:
            if member.state == "DELETING":
                continue
            for group_id in set(member.security_groups) & remotes:
                members.setdefault(group_id, []).extend(ip.address for ip in member.ips)
        by_group: dict[str, list[SecurityRule]] = {}
        for rule in rules:
            by_group.setdefault(rule.group_id, []).append(rule)
        tags: list[str] = []
        for port in ports:
            port_rules = [r for g in port.security_groups for r in by_group.get(g, ())]
            tags += security.node_tags(port, port_rules, members)
        return list(dict.fromkeys(tags))

    async def server_tags(self, server_id: int) -> list[str]:
        found: list[str] = await self._db.run("cyclades.security_tags",
                                              self.server_tags_txn, server_id)
        return found

    async def deliver(self, server_ids: Iterable[int]) -> None:
        """Bring the security-group tags of each server's instance to what
        the database says, and have the nodes apply them (a no-op modify
        job, whose post hooks refresh the NICs' rules).  Failures are
        logged, not raised: the database is the truth."""
        for server_id in sorted(set(server_ids)):
            try:
                await self._deliver_one(server_id)
            except (RapiUnavailable, RapiError, errors.Fault) as e:
                log.warn("server {id}: security groups not delivered: {e}", id=server_id,
                         e=getattr(e, "message", None) or str(e))

    async def _deliver_one(self, server_id: int) -> None:
        def txn_(txn: Any) -> tuple[Server | None, GanetiBackend | None, list[str]]:
            server = compute_store.server_txn(txn, server_id)
            if server is None or server.deleted or server.backend_id is None:
                return None, None, []
            backend = compute_store.backend_txn(txn, server.backend_id)
            return server, backend, self.server_tags_txn(txn, server_id)
        server, backend, wanted = await self._db.run("cyclades.security_deliver", txn_)
        if server is None or backend is None:
            return
        rapi = self._rapi(backend)
        current = await rapi.instance(server.instance_name)
        if not current:
            return
        have = [t for t in current.get("tags", []) if t.startswith(TAG_PREFIX)]
        stale = [t for t in have if t not in wanted]
        missing = [t for t in wanted if t not in have]
        jobs = []
        if stale:
            jobs.append(await rapi.delete_tags(server.instance_name, stale))
        if missing:
            jobs.append(await rapi.add_tags(server.instance_name, missing))
        if jobs and current.get("os"):
            # After the tag jobs: its hooks must read the new tags.
            await rapi.modify(server.instance_name, os_name=current["os"],
                              depends=[[j, ["success"]] for j in jobs])


def _servers_of(ports: Iterable[Port]) -> list[int]:
    return sorted({p.device_id for p in ports if p.device_id is not None})


def _rule_values(req: RuleRequest) -> dict[str, Any]:
    return {"direction": req.direction, "ethertype": req.ethertype, "protocol": req.protocol,
            "port_range_min": req.port_range_min, "port_range_max": req.port_range_max,
            "remote_ip_prefix": req.remote_ip_prefix, "remote_group_id": req.remote_group_id,
            "description": req.description}
