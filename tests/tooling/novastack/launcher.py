"""One-process Nova for the live tests; runs in the harness venv, never in the project's.

The real nova-api WSGI app plus conductor, scheduler and nova-compute (fake virt driver),
configured from a normal nova.conf with real sqlite cell databases made by nova-manage,
talking to a separate real placement-api process. In-process only: the oslo.messaging
fake:// transport and nova's upstream fakes for Glance, Neutron and Cinder
(nova.tests.fixtures), which is why nova is pinned: these are internal test fixtures.

Auth: api-paste.ini without keystonemiddleware.authtoken; this script maps X-Auth-Token
"<user>:<project>" to X-User-Id/X-Project-Id/X-Roles (user "admin" gets the admin role).
No header means admin in the default project.

Usage: OS_NOVA_DISABLE_EVENTLET_PATCHING=1 python launcher.py --config-file nova.conf --port N
Adapted from the shared nova-harness recipe (novastack2.py).
"""
import copy
import faulthandler
import itertools
import os
import signal
import sys
import threading
import time

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
from nova import monkey_patch  # noqa: E402

monkey_patch.patch(backend='threading')

import socketserver  # noqa: E402
from wsgiref import simple_server  # noqa: E402

import fixtures  # noqa: E402
from oslo_config import cfg  # noqa: E402

cfg.CONF.register_cli_opts([
    cfg.StrOpt('listen', default='127.0.0.1'),
    cfg.PortOpt('port', default=8774),
    cfg.StrOpt('default-project', default='6f70656e737461636b20342065766572'),
])

import nova.conf  # noqa: E402
from nova import config  # noqa: E402
from nova import context  # noqa: E402
from nova import objects  # noqa: E402
from nova import service  # noqa: E402

CONF = nova.conf.CONF
# NeutronFixture gives every port 192.168.1.30; link-local addresses are unique per
# instance and never routable, so a stray connection to one stays on this host's link.
_FIRST_HOST = 100
_HOSTS = 150


class _Shim:
    """The tiny part of a TestCase that nova's service fixtures use."""

    def flags(self, **kw):
        group = kw.pop('group', None)
        for key, value in kw.items():
            CONF.set_override(key, value, group)

    def stub_out(self, old, new):
        self.useFixture(fixtures.MonkeyPatch(old, new))

    def useFixture(self, fix):
        fix.setUp()
        return fix


def _unique_port_ips(neutron):
    """Hand out 169.254.80.100-249 round-robin instead of the fixture's one address."""
    counter = itertools.count()
    for subnet in neutron._subnets.values():
        if subnet.get('ip_version') == 4:
            subnet.update(cidr='169.254.80.0/24', gateway_ip='169.254.80.1',
                          allocation_pools=[{'start': '169.254.80.2',
                                             'end': '169.254.80.254'}])
    original = neutron.create_port

    def create_port(body=None):
        result = original(body)
        port = neutron._ports[result['port']['id']]
        host = _FIRST_HOST + next(counter) % _HOSTS
        for fixed_ip in port.get('fixed_ips', []):
            if ':' not in fixed_ip['ip_address']:
                fixed_ip['ip_address'] = '169.254.80.%d' % host
        result['port']['fixed_ips'] = copy.deepcopy(port.get('fixed_ips', []))
        return result
    neutron.create_port = create_port


def token_middleware(app, default_project):
    def wrapped(environ, start_response):
        token = environ.get('HTTP_X_AUTH_TOKEN') or 'admin:' + default_project
        user, _, project = token.partition(':')
        environ['HTTP_X_USER_ID'] = user
        environ['HTTP_X_USER_NAME'] = user
        environ['HTTP_X_PROJECT_ID'] = project or default_project
        environ['HTTP_X_ROLES'] = ('admin,member,reader' if user == 'admin'
                                   else 'member,reader')
        return app(environ, start_response)
    return wrapped


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _Handler(simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):
        if os.environ.get('NOVASTACK_ACCESS_LOG'):
            super().log_message(fmt, *args)


def _map_compute_host(ctxt):
    """nova-manage cell_v2 discover_hosts, in process, once the compute service exists."""
    from nova import exception
    from nova.objects import host_mapping
    for _ in range(50):
        host_mapping.discover_hosts(ctxt, by_service=True)
        try:
            objects.HostMapping.get_by_host(ctxt, CONF.host)
            return
        except exception.HostMappingNotFound:
            time.sleep(0.2)
    raise RuntimeError('compute host %s never registered' % CONF.host)


def main():
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    started = time.time()
    config.parse_args(sys.argv)          # also does rpc.init(CONF)
    from oslo_log import log as logging
    logging.setup(CONF, 'nova')
    objects.register_all()
    shim = _Shim()
    from nova.tests.fixtures import cinder as f_cinder
    from nova.tests.fixtures import glance as f_glance
    from nova.tests.fixtures import neutron as f_neutron
    neutron = shim.useFixture(f_neutron.NeutronFixture(shim))
    _unique_port_ips(neutron)
    shim.useFixture(f_glance.GlanceFixture(shim))
    shim.useFixture(f_cinder.CinderFixture(shim))
    # SQLite allows one writer per file: serialize writer transactions per database as
    # nova's own threading-mode functional tests do (the files are in WAL mode).
    from nova.tests.fixtures.nova import DatabaseWriteLock
    shim.useFixture(DatabaseWriteLock())

    for binary, topic in (('nova-conductor', 'conductor'),
                          ('nova-scheduler', 'scheduler'),
                          ('nova-compute', 'compute')):
        service.Service.create(binary=binary, topic=topic).start()
    _map_compute_host(context.get_admin_context())

    from nova.api import wsgi as nova_wsgi
    from nova.api.openstack import wsgi_app
    wsgi_app._setup_service(CONF.host, 'osapi_compute')
    app = token_middleware(nova_wsgi.Loader().load_app('osapi_compute'),
                           CONF.default_project)
    httpd = simple_server.make_server(CONF.listen, CONF.port, app,
                                      server_class=_Server, handler_class=_Handler)
    print('novastack: nova API listening on http://%s:%d/v2.1 (startup %.1fs)'
          % (CONF.listen, CONF.port, time.time() - started), file=sys.stderr, flush=True)

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    httpd.serve_forever()
    print('novastack: stopped', file=sys.stderr, flush=True)
    os._exit(0)


if __name__ == '__main__':
    try:
        main()
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(1)
