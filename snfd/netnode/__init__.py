"""Node-side networking: what Ganeti runs when an instance's NIC comes up or
goes down on a node (Synnefo's snf-network, rebuilt).

Ganeti's KVM hypervisor creates a tap device per NIC and runs its
``kvm-ifup`` with the NIC described in the environment; ``kvm-ifup`` hands
over to an administrator's script (``/etc/ganeti/kvm-vif-bridge`` in stock
Ganeti 3.0, ``kvm-ifup-custom`` in GRNET's Ganeti). The wrappers in
``share/ganeti/`` run ``python -m snfd.netnode ifup|ifdown``, which:

- reads the environment into a :class:`snfd.netnode.nic.Nic` (``nic``: pure,
  no I/O), deciding the network flavor from the Ganeti network's tags and the
  firewall profile and security groups from the instance's tags;
- renders that NIC's nftables tables (``rules``: pure);
- applies or removes it with ``ip`` and ``nft`` (``host``), one line on
  stderr per action; ``hook.main`` is the entry point.

``python -m snfd.netnode refresh`` is a Ganeti hook (instance modify, post
phase) that replaces the tables of a running instance's NICs from its
current tags, so changed security groups apply without a reboot.

This package runs on Ganeti nodes under Ganeti's environment, so it uses the
standard library only and imports nothing else from snfd.
"""
