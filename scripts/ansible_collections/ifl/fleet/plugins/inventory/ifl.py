# -*- coding: utf-8 -*-
# Copyright: ifl developers
# SPDX-License-Identifier: Apache-2.0

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
name: ifl
short_description: The hosts that ifl's probes verified, from C(ifl inventory --list)
version_added: 1.0.0
author: ifl developers (@ifl-project)
description:
  - Reads the inventory that C(ifl probe) keeps, through C(ifl inventory --list).
    It lists every agent that proved it holds the fleet's network key, by the name ifl gave it,
    with C(ansible_host) set to an address where it proved its identity.
  - ifl applies the trust rules (names, groups, bounds); this plugin never reads the state
    file itself. Every value an agent chose (hostname, OS, kernel, agent version, gateway,
    MACs, reported addresses, label values) stays unsafe in hostvars, as ifl marks it.
    C(compose), C(groups) and C(keyed_groups) may read it, and it is never templated.
  - Groups are ifl's (C(ifl_all), C(ifl_stale), one C(<key>_<value>) per label), then those
    of C(groups) and C(keyed_groups). A keyed group whose name, made of an agent's value,
    would be C(all), C(ungrouped), C(_meta), C(localhost), C(ifl) or C(ifl_*) in any case,
    or a host's name, is not made, with a warning.
  - The inventory file's name must end in C(ifl.yml) or C(ifl.yaml).
  - With C(cache), what C(ifl inventory --list) printed is kept, and read back as ifl printed it,
    so agent values stay unsafe through any cache plugin; a run that finds it does not start ifl.
options:
  plugin:
    description: The name of this plugin.
    required: true
    type: str
    choices: ['ifl.fleet.ifl']
  binary:
    description:
      - The ifl program, by path or by a name looked up in C(PATH).
    type: str
    default: ifl
    env:
      - name: IFL
  state:
    description:
      - The inventory state that C(ifl probe) writes (C(ifl inventory --state)).
      - By default ifl's own choice, C(/var/lib/ifl/inventory.json) as root, else
        C(~/.local/state/ifl/inventory.json) or, when that does not exist, the controller's
        C(/var/lib/ifl/inventory.json), which the group C(ifl) may read.
    type: path
    env:
      - name: IFL_STATE
  prefer:
    description:
      - The address family of C(ansible_host) for a host verified on both IPv4 and IPv6;
        a host with one family uses it (C(ifl inventory --prefer)).
    type: str
    choices: [ipv4, ipv6]
    default: ipv4
    env:
      - name: IFL_PREFER
  stale:
    description:
      - Which hosts to list by staleness (C(ifl_stale), not seen for I(stale_after)).
      - C(include) lists every host, C(exclude) only the hosts seen lately, C(only) the stale ones.
    type: str
    choices: [include, exclude, only]
    default: include
  stale_after:
    description:
      - A host not seen for this long is stale (C(ifl inventory --stale-after)), for
        example C(90m), C(24h), C(7d).
    type: str
    default: 24h
  timeout:
    description:
      - Seconds C(ifl inventory) may take; past that it is stopped and the inventory fails.
    type: float
    default: 30
extends_documentation_fragment:
  - constructed
  - inventory_cache
notes:
  - A failing C(ifl inventory) (no state, a state the user may not read, a state that is
    not an inventory) fails this inventory source with ifl's own message.
  - ifl's messages on its standard error, on success, are shown as warnings.
seealso:
  - name: ifl's README, Inventory and Ansible
    description: What ifl trusts, how it names hosts and groups, and every variable.
    link: https://github.com/ifl-project/ifl#inventory-and-ansible
'''

EXAMPLES = r'''
# inventory/ifl.yml: the hosts ifl found, grouped by site and OS
plugin: ifl.fleet.ifl
stale: exclude                 # or include, or only
prefer: ipv4
keyed_groups:
  - key: ifl_labels.site
    prefix: site
  - key: ifl_os | regex_replace(' .*', '')
    prefix: os
compose:
  ansible_port: 2222 if 'bastion' in (ifl_labels.role | default('')) else 22
groups:
  stale_but_known: ifl_stale
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ifl-inventory
cache_timeout: 60

# inventory/site-b.ifl.yml: another controller's state, over IPv6
plugin: ifl.fleet.ifl
state: /srv/site-b/inventory.json
prefer: ipv6
timeout: 10
'''

import hashlib
import json
import re
import subprocess

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import AnsibleUnsafeText
from ansible.utils.vars import combine_vars

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover
    from collections import Mapping

# Ansible's own rule for group names (ansible.constants.INVALID_VARIABLE_NAMES),
# in ASCII: ifl's label groups are ASCII, and a group named with a letter
# from another script could pass for one of them.
_GROUP_UNSAFE = re.compile(r'^[\d\W]|[^\w]', re.ASCII)

# Names no group made from an agent's value may have: Ansible's own, the
# name Ansible gives the control node, and ifl's (in any case, as ifl
# refuses label keys).
_RESERVED_GROUPS = frozenset(('all', 'ungrouped', '_meta', 'localhost'))

# The groups ifl makes itself; every other group in its answer is a label's.
_IFL_GROUPS = frozenset(('ifl_all', 'ifl_stale'))

# Compiled Jinja templates kept per parse: compose and keyed_groups use the
# same few expressions for every host, and compiling one costs far more
# than rendering it.
_TEMPLATE_CACHE_SIZE = 256


def safe_group_name(name):
    """Makes a group name as Ansible's keyed_groups does: every character
    that is not a letter, a digit or _ , and a leading digit, becomes _."""
    return _GROUP_UNSAFE.sub('_', name)


def _decode_object(pairs):
    """JSON object hook: {"__ansible_unsafe": "..."} as ifl writes it is an
    unsafe string, and nothing else is special (no vault, no other marker).
    The marker's value must be a JSON string: an object already decoded as
    unsafe (a label whose key is __ansible_unsafe) stays an object."""
    if len(pairs) == 1 and '__ansible_unsafe' in pairs and type(pairs['__ansible_unsafe']) is str:
        return AnsibleUnsafeText(pairs['__ansible_unsafe'])
    return pairs


def decode_list(text):
    """Reads what ifl inventory --list printed: groups and _meta.hostvars."""
    try:
        data = json.loads(text, object_hook=_decode_object)
    except ValueError as e:
        raise AnsibleParserError('ifl inventory --list printed what is not JSON: %s' % to_native(e))
    if not isinstance(data, Mapping) or not isinstance(data.get('_meta'), Mapping) or \
            not isinstance(data['_meta'].get('hostvars'), Mapping):
        raise AnsibleParserError('ifl inventory --list printed no _meta.hostvars: is this ifl?')
    return data


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'ifl.fleet.ifl'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(('ifl.yml', 'ifl.yaml'))

    def _command(self):
        """The ifl command line that prints the inventory."""
        argv = [self.get_option('binary'), 'inventory', '--list',
                '--prefer', self.get_option('prefer'),
                '--stale-after', self.get_option('stale_after')]
        # Where the inventory is read from: a state file is the one source
        # ifl has. A shared store, when ifl has one (IFL_STORE), is chosen
        # here, beside the state, and read by ifl inventory alike.
        if self.get_option('state'):
            argv += ['--state', self.get_option('state')]
        return argv

    def _run_ifl(self, argv):
        timeout = self.get_option('timeout')
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise AnsibleParserError('%s: no answer within %s s: it was stopped (the option timeout sets the limit)'
                                     % (' '.join(argv), timeout))
        except OSError as e:
            raise AnsibleParserError('cannot run %s: %s (install ifl, or set the option binary or IFL to its path)'
                                     % (argv[0], to_native(e.strerror or e)))
        err = to_text(proc.stderr, errors='surrogate_or_replace').strip()
        if proc.returncode != 0:
            raise AnsibleParserError('%s failed (exit status %d): %s'
                                     % (' '.join(argv), proc.returncode, err or 'no message'))
        for line in err.splitlines():
            self.display.warning('ifl: %s' % line)
        return to_text(proc.stdout, errors='surrogate_or_strict')

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)

        argv = self._command()
        # The cache holds ifl's answer to this command line only.
        cache_key = '%s_%s' % (self.get_cache_key(path),
                               hashlib.sha256(json.dumps(argv).encode('utf-8')).hexdigest()[:16])
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        text = None
        if use_cache:
            try:
                text = self._cache[cache_key]
            except KeyError:
                update_cache = True
            if text is not None and not isinstance(text, str):
                text, update_cache = None, True
        if text is None:
            text = self._run_ifl(argv)
        if update_cache:
            self._cache[cache_key] = text
        self._populate(decode_list(text))

    def _refusal(self, name):
        """Why a group made from an agent's value may not be name, or None."""
        if name in _RESERVED_GROUPS:
            return 'reserved by Ansible'
        low = name.lower()
        if low == 'ifl' or low.startswith('ifl_'):
            return "the groups ifl and ifl_* are ifl's"
        if name in self.inventory.hosts:
            return "a host's name"
        return None

    def _populate(self, data):
        hostvars = data['_meta']['hostvars']
        stale = self.get_option('stale')
        hosts = {}
        for name, hv in hostvars.items():
            if not isinstance(hv, Mapping):
                raise AnsibleParserError('ifl inventory --list: host %s has no variables' % name)
            is_stale = hv.get('ifl_stale') is True
            if stale == 'exclude' and is_stale or stale == 'only' and not is_stale:
                continue
            hosts[name] = hv

        for name, hv in hosts.items():
            self.inventory.add_host(name)
            host = self.inventory.get_host(name)
            for k, v in hv.items():
                host.set_variable(k, v)

        # ifl's groups: ifl_all and ifl_stale always, so that a play may
        # name them whatever they hold; label groups as ifl names them.
        self._dropped = set()
        for group in sorted(_IFL_GROUPS):
            self.inventory.add_group(group)
        for group, body in sorted(data.items()):
            if group in ('_meta', 'all') or not isinstance(body, Mapping):
                continue
            members = [h for h in body.get('hosts') or [] if h in hosts]
            if group not in _IFL_GROUPS:
                if not members:
                    continue
                group = self._group_for(group, members[0], 'a label')
                if group is None:
                    continue
            for h in members:
                self.inventory.add_child(group, h)

        compose = self.get_option('compose')
        groups = self.get_option('groups')
        keyed = self.get_option('keyed_groups')
        if not (compose or groups or keyed):
            return
        strict = self.get_option('strict')
        self._cache_templates()
        try:
            for name, hv in hosts.items():
                self._set_composite_vars(compose, hv, name, strict=strict)
                # Once a host, not once a keyed group: what compose set,
                # and Ansible's own variables, for the rest.
                variables = combine_vars(hv, self.inventory.get_host(name).get_vars())
                self._add_host_to_composed_groups(groups, variables, name, strict=strict, fetch_hostvars=False)
                self._add_host_to_keyed_groups(keyed, variables, name, strict=strict, fetch_hostvars=False)
        finally:
            self._uncache_templates()

    def _cache_templates(self):
        env = getattr(self.templar, 'environment', None)
        from_string = getattr(env, 'from_string', None)
        if from_string is None:
            # A templating engine without a Jinja environment of its own
            # (later ansible-core): templates render uncached.
            return
        cache = {}

        def cached(source, *args, **kwargs):
            if args or kwargs:
                return from_string(source, *args, **kwargs)
            t = cache.get(source)
            if t is None:
                if len(cache) >= _TEMPLATE_CACHE_SIZE:
                    cache.clear()
                t = cache[source] = from_string(source)
            return t

        # An attribute of this parse's own environment: nothing outside
        # this plugin renders with it. Ansible disables lookups on a
        # template object when it renders with disable_lookups (compose and
        # keyed_groups do), so a cached template can only lose lookups, never
        # gain them.
        env.from_string = cached

    def _uncache_templates(self):
        env = getattr(self.templar, 'environment', None)
        if env is not None:
            vars(env).pop('from_string', None)

    def _group_for(self, raw, host, origin):
        """The group a name made from an agent's value gives, or None
        (with one warning a name) when that group is not for it."""
        name = safe_group_name(to_text(raw))
        why = self._refusal(name)
        if why is None:
            return self.inventory.add_group(name)
        if name not in self._dropped:
            self._dropped.add(name)
            self.display.warning('ifl.fleet.ifl: no group %s for host %s from %s: %s'
                                 % (name, host, origin, why))
        return None

    def _add_host_to_keyed_groups(self, keys, variables, host, strict=False, fetch_hostvars=True):
        """keyed_groups as Ansible's Constructable makes them, but every
        name is checked: it is made of what an agent said."""
        if not keys:
            return
        if not isinstance(keys, list):
            raise AnsibleParserError('keyed_groups: want a list of entries, got %s' % type(keys).__name__)
        if fetch_hostvars:
            variables = combine_vars(variables, self.inventory.get_host(host).get_vars())
        for keyed in keys:
            if not keyed or not isinstance(keyed, Mapping):
                raise AnsibleParserError('Invalid keyed group entry, it must be a dictionary: %s ' % keyed)
            try:
                key = self._compose(keyed.get('key'), variables)
            except Exception as e:
                if strict:
                    raise AnsibleParserError('Could not generate group for host %s from %s entry: %s'
                                             % (host, keyed.get('key'), to_native(e)))
                continue
            default_value = keyed.get('default_value', None)
            trailing_separator = keyed.get('trailing_separator')
            if trailing_separator is not None and default_value is not None:
                raise AnsibleParserError('parameters are mutually exclusive for keyed groups: default_value|trailing_separator')
            if not (key or (key == '' and default_value is not None)):
                if strict and key not in ([], {}):
                    raise AnsibleParserError('No key or key resulted empty for %s in host %s, invalid entry'
                                             % (keyed.get('key'), host))
                continue
            prefix = keyed.get('prefix', '')
            sep = keyed.get('separator', '_')
            parent = keyed.get('parent_group', None)
            if parent:
                try:
                    parent = self.templar.template(parent)
                except AnsibleError as e:
                    if strict:
                        raise AnsibleParserError('Could not generate parent group %s for group %s: %s'
                                                 % (parent, key, to_native(e)))
                    continue

            names = []
            if isinstance(key, str):
                names.append(default_value if key == '' and default_value is not None else key)
            elif isinstance(key, list):
                for k in key:
                    names.append(default_value if k == '' and default_value is not None else k)
            elif isinstance(key, Mapping):
                for k, v in key.items():
                    bare = '%s%s%s' % (k, sep, v)
                    if v == '':
                        if default_value is not None:
                            bare = '%s%s%s' % (k, sep, default_value)
                        elif trailing_separator is False:
                            bare = k
                    names.append(bare)
            else:
                raise AnsibleParserError('Invalid group name format, expected a string or a list of them or dictionary, got: %s'
                                         % type(key))

            if prefix == '' and self.get_option('leading_separator') is False:
                sep = ''
            for bare in names:
                group = self._group_for('%s%s%s' % (prefix, sep, bare), host, 'keyed_groups key %s' % keyed.get('key'))
                if group is None:
                    continue
                self.inventory.add_child(group, host)
                if parent:
                    parent_name = self.inventory.add_group(safe_group_name(parent))
                    self.inventory.add_child(parent_name, group)
