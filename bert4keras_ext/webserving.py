"""``WebServing``: bert4keras' tiny HTTP API for trying a model, on the standard library.

bert4keras' version wraps ``bottle`` (+ ``paste``) and TF1 sessions; this one has the same
interface and the same JSON answers, built on ``http.server``, so it needs nothing installed::

    def gen_synonyms(text, n=10):
        return [...]                       # anything json.dumps can write (numpy values too)

    arguments = {'text': (None, True), 'n': (int, False)}
    web = WebServing(port=8864)
    web.route('/gen_synonyms', gen_synonyms, arguments)
    web.start()                            # blocks; then GET http://127.0.0.1:8864/gen_synonyms?text=你好

Every route answers HTTP 200 with a JSON object:

* ``{"code": 0, "desc": "succeeded", "data": <func's result>}`` on success;
* ``{"code": 1, "desc": "lack of \\"text\\" argument"}`` when a required argument is missing (and,
  here, when a converter such as ``int`` rejects a value, or the body's Content-Type is not a form);
* ``{"code": 2, "desc": str(exception)}`` when ``func`` raises (or its result is not JSON).

Unknown paths get HTTP 404 and a known path with another method HTTP 405 (as bottle). GET arguments
come from the query string; POST arguments from an ``application/x-www-form-urlencoded`` or
``multipart/form-data`` body (file parts are ignored), like bottle's ``request.GET`` / ``request.POST``;
a repeated argument takes its last value. Calls to the wrapped functions are serialised by a lock,
so a Keras model is never run from two request threads at once. Like bert4keras', this is for
demos and tests, not production serving.
"""
import email.parser
import email.policy
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ['WebServing']

_logger = logging.getLogger(__name__)


def _json_default(obj):
    # numpy arrays and scalars (model outputs) -> plain lists / numbers
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    raise TypeError('Object of type %s is not JSON serializable' % type(obj).__name__)


class _BadRequest(Exception):
    """A request that cannot be read as a form (answered with code 1)."""


def _parse_form(content_type, body):
    """Form fields of a POST body as ``{name: [values]}``."""
    kind = content_type.split(';')[0].strip().lower()
    if kind in ('', 'application/x-www-form-urlencoded'):
        try:
            text = body.decode('utf-8')
        except UnicodeDecodeError:
            raise _BadRequest('the form body is not valid UTF-8') from None
        return parse_qs(text, keep_blank_values=True)
    if kind == 'multipart/form-data':
        header = ('Content-Type: %s\r\nMIME-Version: 1.0\r\n\r\n' % content_type).encode('latin-1')
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        if not message.is_multipart():
            raise _BadRequest('could not read the multipart/form-data body')
        form = {}
        for part in message.iter_parts():
            name = part.get_param('name', header='content-disposition')
            if name is None or part.get_filename() is not None:
                continue  # files are not arguments
            payload = part.get_payload(decode=True) or b''
            charset = part.get_content_charset() or 'utf-8'
            try:
                form.setdefault(name, []).append(payload.decode(charset))
            except (LookupError, UnicodeDecodeError):
                raise _BadRequest('form field %r is not valid %s' % (name, charset)) from None
        return form
    raise _BadRequest('unsupported Content-Type %r: send application/x-www-form-urlencoded or '
                      'multipart/form-data' % kind)


class WebServing(object):
    """A small HTTP server that exposes Python functions as JSON endpoints (bert4keras API).

    Args:
        host: address to listen on (``'0.0.0.0'``: all interfaces; ``'127.0.0.1'``: this machine).
        port: TCP port; ``0`` picks a free one (read ``self.port`` after :meth:`wait_started`).
        server: bert4keras' bottle back-end name (``'paste'``, ``'wsgiref'``, ...). Accepted for
            compatibility and ignored: the standard library's threading server is always used.
    """

    def __init__(self, host='0.0.0.0', port=8000, server='paste'):
        self.host = host
        self.port = port
        self.server = server
        self._routes = {}  # path -> {method: handler}
        self._call_lock = threading.Lock()
        self._started = threading.Event()
        self._httpd = None

    def wraps(self, func, arguments, method='GET'):
        """Wrap ``func`` as a handler: ``{name: [values]}`` form -> response dict.

        Args:
            func: called as ``func(**kwargs)``; its result must be JSON-serialisable (numpy
                arrays and scalars are converted with ``tolist()``).
            arguments: ``{name: (converter, required)}``: ``converter`` turns the string value
                into what ``func`` expects (``None``: pass the string); a missing required
                argument is an error, a missing optional one is not passed (``func``'s default).
            method: ``'GET'`` or ``'POST'``.
        """
        method = self._check_method(method)
        for name, spec in arguments.items():
            if not (isinstance(spec, (tuple, list)) and len(spec) == 2
                    and (spec[0] is None or callable(spec[0]))):
                raise ValueError('WebServing: arguments[%r] must be (converter or None, required), '
                                 'got %r' % (name, spec))

        def new_func(form):
            outputs = {'code': 0, 'desc': 'succeeded', 'data': {}}
            kwargs = {}
            for name, (convert, required) in arguments.items():
                values = form.get(name)
                if not values:
                    if required:
                        return {'code': 1, 'desc': 'lack of "%s" argument' % name}
                    continue
                value = values[-1]
                if convert is not None:
                    try:
                        value = convert(value)
                    except Exception as e:
                        return {'code': 1, 'desc': 'bad "%s" argument: %s' % (name, e)}
                kwargs[name] = value
            try:
                with self._call_lock:
                    outputs['data'] = func(**kwargs)
                # fail here (code 2) rather than after the handler has started answering
                json.dumps(outputs['data'], default=_json_default)
            except Exception as e:
                return {'code': 2, 'desc': str(e)}
            return outputs

        return new_func

    @staticmethod
    def _check_method(method):
        method = str(method).upper()
        if method not in ('GET', 'POST'):
            raise ValueError("WebServing: method must be 'GET' or 'POST', got %r" % (method,))
        return method

    def route(self, path, func, arguments, method='GET'):
        """Serve ``func`` at ``path`` (e.g. ``'/gen_synonyms'``) for ``method`` requests."""
        if not isinstance(path, str) or not path.startswith('/'):
            raise ValueError("WebServing: path must be a str starting with '/', got %r" % (path,))
        method = self._check_method(method)
        self._routes.setdefault(path, {})[method] = self.wraps(func, arguments, method)

    def _handler_class(self):
        routes = self._routes

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, payload):
                body = json.dumps(payload, ensure_ascii=False, default=_json_default).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json; charset=utf-8')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _dispatch(self, method):
                url = urlsplit(self.path)
                handlers = routes.get(url.path)
                if handlers is None:
                    return self._answer(404, {'code': 404, 'desc': 'no route %s' % url.path})
                handler = handlers.get(method)
                if handler is None:
                    return self._answer(405, {'code': 405, 'desc': '%s only accepts %s'
                                              % (url.path, ', '.join(sorted(handlers)))})
                try:
                    if method == 'GET':
                        form = parse_qs(url.query, keep_blank_values=True)
                    else:
                        length = int(self.headers.get('Content-Length') or 0)
                        body = self.rfile.read(length) if length > 0 else b''
                        form = _parse_form(self.headers.get('Content-Type', ''), body)
                except _BadRequest as e:
                    return self._answer(200, {'code': 1, 'desc': str(e)})
                return self._answer(200, handler(form))

            def do_GET(self):  # noqa: N802  (http.server's naming)
                self._dispatch('GET')

            def do_POST(self):  # noqa: N802
                self._dispatch('POST')

            def log_message(self, format, *args):  # noqa: A002
                _logger.info('%s - %s', self.address_string(), format % args)

        return Handler

    def start(self):
        """Listen on ``(host, port)`` and serve requests until :meth:`stop` (blocks, as bert4keras)."""
        httpd = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]  # the real port when 0 was asked for
        self._started.set()
        try:
            httpd.serve_forever(poll_interval=0.1)
        finally:
            httpd.server_close()
            self._started.clear()
            self._httpd = None

    def wait_started(self, timeout=None):
        """Block until :meth:`start` (in another thread) listens; True if it does within ``timeout``."""
        return self._started.wait(timeout)

    def stop(self):
        """Stop a running :meth:`start` from another thread (it then returns); no-op otherwise."""
        httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
