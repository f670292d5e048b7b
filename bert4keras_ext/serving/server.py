"""``ModelServer``: JSON over HTTP for one task, standard library only, with micro-batching.

    server = ModelServer(task, host='127.0.0.1', port=8000, max_batch=32, max_wait_ms=5)
    server.start()            # listens and batches in background threads; server.url is the address
    ...
    server.stop()             # stops listening, answers what is queued, ends the threads

Routes:

- ``POST /<task name>`` (``/classify``, ``/ner``, ``/generate``): a JSON object in, a JSON object out
  (HTTP 200); see `bert4keras_ext.serving.tasks` for the fields;
- ``GET /health``: ``{"status": "ok", "task", "settings", "stats"}`` (batches run, requests answered, ...).

Errors are JSON ``{"error": "<what was wrong>"}`` with: 400 (not JSON, not an object, a missing /
unknown / empty field, a text over ``maxlen`` tokens, a bad Content-Length), 404 (unknown path), 405
(wrong method), 411 (no Content-Length), 413 (body over ``max_body_bytes``; the body is not read), 500
(the model call failed; the traceback goes to the log), 503 (queue full, or shutting down), 504 (no
answer within ``request_timeout``).

Each connection has a thread (``ThreadingHTTPServer``, HTTP/1.1 keep-alive); the threads only parse
and wait — the model runs on the `MicroBatcher`'s thread, one batched call for the requests that
arrived together.
"""
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from bert4keras_ext.serving.batcher import BatcherBusy, BatcherClosed, MicroBatcher
from bert4keras_ext.serving.tasks import RequestError

__all__ = ['ModelServer']

_logger = logging.getLogger(__name__)
# Refused bodies up to this size are read and dropped so the client gets the 413 (see Handler._discard).
_DISCARD_LIMIT = 16 << 20


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # bigger than the default 5 so 32+ clients connecting at once are not refused
    request_queue_size = 128


class ModelServer(object):
    """Serve `task` over HTTP with micro-batching.

    Args:
        task: a task object (`ClassifyTask`, `NerTask`, `GenerateTask`, or anything with ``name``,
            ``parse``, ``run_batch`` and ``describe``).
        host: address to listen on ('127.0.0.1' = this machine only; '0.0.0.0' = every interface).
        port: TCP port; 0 picks a free one (read ``.port`` / ``.url`` after :meth:`start`).
        max_batch: most requests per model call.
        max_wait_ms: how long the first request of a batch waits for others.
        max_body_bytes: larger request bodies get 413 without being read.
        request_timeout: seconds a request waits for its answer before 504.
        max_queue: requests waiting at once before 503.
        access_log: a stream for one line per request (None = no access log).
    """

    def __init__(self, task, host='127.0.0.1', port=8000, max_batch=32, max_wait_ms=5.0,
                 max_body_bytes=1 << 20, request_timeout=60.0, max_queue=1024, access_log=None):
        self.task = task
        self.host = host
        self.port = port
        self.max_body_bytes = int(max_body_bytes)
        self.request_timeout = request_timeout
        self.access_log = access_log
        self.batcher = MicroBatcher(task.run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                    max_queue=max_queue)
        self.settings = {'max_batch': max_batch, 'max_wait_ms': max_wait_ms, 'max_body_bytes': self.max_body_bytes}
        self.requests = 0          # answered with 200
        self.rejected = 0          # answered with 4xx / 5xx
        self._count_lock = threading.Lock()
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        """``http://host:port`` of the running server."""
        host = '127.0.0.1' if self.host in ('', '0.0.0.0') else self.host
        return 'http://%s:%d' % (host, self.port)

    def start(self):
        """Bind, then serve and batch in background threads; returns at once."""
        if self._httpd is not None:
            raise RuntimeError('ModelServer.start: already running')
        self._httpd = _HTTPServer((self.host, self.port), self._handler_class())
        self.port = self._httpd.server_address[1]
        self.batcher.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={'poll_interval': 0.1},
                                        name='serve-http', daemon=True)
        self._thread.start()
        return self

    def wait(self):
        """Block until :meth:`stop` is called from elsewhere (or Ctrl-C, which then stops the server)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()

    def stop(self, timeout=30.0):
        """Stop accepting connections, answer the queued requests, end the threads (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()  # no new requests; requests already parsed are still in the batcher's queue
        self.batcher.stop(timeout)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self):
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def health(self):
        """What ``GET /health`` answers."""
        stats = dict(self.batcher.stats(), requests=self.requests, rejected=self.rejected)
        return {'status': 'ok', 'task': self.task.name, 'settings': dict(self.settings, **self.task.describe()),
                'stats': stats}

    def _count(self, status):
        with self._count_lock:
            if status == 200:
                self.requests += 1
            else:
                self.rejected += 1

    def answer(self, payload):
        """(status, JSON object) for one parsed request body; runs on the request's thread."""
        try:
            item = self.task.parse(payload)
        except RequestError as e:
            return e.status, {'error': str(e)}
        try:
            return 200, self.batcher.submit(item, timeout=self.request_timeout)
        except BatcherBusy as e:
            return 503, {'error': 'server busy: %s; retry later' % e}
        except BatcherClosed as e:
            return 503, {'error': str(e)}
        except TimeoutError as e:
            return 504, {'error': 'the model did not answer in time (%s)' % e}
        except Exception as e:  # logged with its traceback by the batcher
            return 500, {'error': 'the model call failed: %s: %s' % (type(e).__name__, e)}

    def stream(self, payload):
        """The event generator of a streamed request (`{"stream": true}` to a task that streams), else None."""
        if not (hasattr(self.task, 'stream') and isinstance(payload, dict) and payload.get('stream') is True):
            return None
        try:
            item = self.task.parse(payload)
        except RequestError:
            return None  # `answer` parses again and sends the 4xx
        return self.task.stream(item)

    def _handler_class(self):
        server = self
        route = '/' + self.task.name

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            timeout = 60  # seconds a connection may sit idle or half-sent before its thread gives up
            server_version = 'bert4keras_ext-serve'
            # TCP_NODELAY: headers and body are two writes; with Nagle's algorithm the body would wait
            # for the client's delayed ACK (~40 ms per answer on a keep-alive connection)
            disable_nagle_algorithm = True

            def _send(self, status, payload, close=False):
                body = json.dumps(payload, ensure_ascii=False).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json; charset=utf-8')
                self.send_header('Content-Length', str(len(body)))
                if close:
                    self.send_header('Connection', 'close')
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
                server._count(status)

            def _error(self, status, message, close=False):
                self._send(status, {'error': message}, close)

            def _discard(self, length):
                # Read (and drop) a refused body of moderate size before answering: closing a socket with
                # unread data resets the connection, and the client would see that instead of the 413.
                if length > _DISCARD_LIMIT:
                    return
                while length > 0:
                    chunk = self.rfile.read(min(length, 1 << 16))
                    if not chunk:
                        break
                    length -= len(chunk)

            def do_GET(self):  # noqa: N802  (http.server's naming)
                path = urlsplit(self.path).path
                if path == '/health':
                    return self._send(200, server.health())
                if path == route:
                    return self._error(405, '%s takes POST with a JSON body' % route)
                return self._error(404, 'no route %s; this server answers POST %s and GET /health' % (path, route))

            def do_POST(self):  # noqa: N802
                path = urlsplit(self.path).path
                length = self.headers.get('Content-Length')
                if path != route:
                    # the body is not read: close, so its bytes are not taken for the next request
                    if path == '/health':
                        return self._error(405, '/health takes GET', close=True)
                    return self._error(404, 'no route %s; this server answers POST %s and GET /health'
                                       % (path, route), close=True)
                if length is None:
                    return self._error(411, 'a Content-Length header is needed (chunked bodies are not read)',
                                       close=True)
                try:
                    length = int(length)
                    if length < 0:
                        raise ValueError
                except ValueError:
                    return self._error(400, 'bad Content-Length %r' % length, close=True)
                if length > server.max_body_bytes:
                    self._discard(length)
                    return self._error(413, 'the body is %d bytes; this server takes at most %d'
                                       % (length, server.max_body_bytes), close=True)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body.decode('utf-8'))
                except UnicodeDecodeError as e:
                    return self._error(400, 'the body is not UTF-8: %s' % e)
                except ValueError as e:
                    return self._error(400, 'the body is not valid JSON: %s' % e)
                stream = server.stream(payload)
                if stream is not None:
                    return self._send_stream(stream)
                status, answer = server.answer(payload)
                self._send(status, answer)

            def _send_stream(self, events):
                """Newline-delimited JSON events in a chunked answer, each sent as soon as it exists."""
                self.send_response(200)
                self.send_header('Content-Type', 'application/x-ndjson; charset=utf-8')
                self.send_header('Transfer-Encoding', 'chunked')
                self.end_headers()
                try:
                    for event in events:
                        line = (json.dumps(event, ensure_ascii=False) + '\n').encode('utf-8')
                        self.wfile.write(b'%x\r\n%s\r\n' % (len(line), line))
                        self.wfile.flush()
                except Exception as e:  # the status line is out: report the failure as the last event
                    _logger.exception('streamed request failed')
                    line = (json.dumps({'error': 'the model call failed: %s: %s' % (type(e).__name__, e)})
                            + '\n').encode('utf-8')
                    self.wfile.write(b'%x\r\n%s\r\n' % (len(line), line))
                    server._count(500)
                else:
                    server._count(200)
                self.wfile.write(b'0\r\n\r\n')

            def log_message(self, format, *args):  # noqa: A002
                if server.access_log is not None:
                    server.access_log.write('%s - %s\n' % (self.address_string(), format % args))
                    server.access_log.flush()

            def log_error(self, format, *args):  # noqa: A002
                _logger.warning('%s - %s', self.address_string(), format % args)

        return Handler


def serve_forever(server, out=sys.stdout):
    """Start `server`, print its address, block until Ctrl-C / SIGTERM, then stop it cleanly."""
    import signal
    server.start()
    print('serving %s on %s (POST %s/%s, GET %s/health); Ctrl-C stops'
          % (server.task.name, server.url, server.url, server.task.name, server.url), file=out, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        server.wait()
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        print('stopped after %d answered request(s) in %d batch(es)' % (server.requests, server.batcher.batches),
              file=out, flush=True)
