// Two TCP sockets joined in the kernel: bytes move from one to the other through a pipe with
// splice(2), never copied into this process, both directions at once, with the half-closes
// passed on. A relay in JavaScript reads every chunk into a Buffer and writes it out again;
// on the tunnel's bulk path (client -> node -> connector -> target) that copy, twice per
// hop, was most of the relays' CPU. Linux only; JavaScript relays where this is not built.
//
// relay(fdA, fdB, pendingAB, pendingBA, done) dups both descriptors (the caller then destroys
// its own sockets), writes the bytes JavaScript had read already (pendingAB to B, pendingBA
// to A) before any spliced byte, and calls done(errno, bytesAB, bytesBA) once both
// directions ended (0) or either failed (a negative errno; both connections are reset then,
// so neither end mistakes a cut-off stream for a complete one). destroy(handle) ends a relay
// early (both connections closed, -ECANCELED); it must not be called after done.
// dup(fd) (below) gives a socket's connection a descriptor another thread can adopt;
// socketpair() two connected local sockets, one end for each thread.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Asked of each pipe (the default is 64 KiB: one splice per 64 KiB); kept if refused.
#define PIPE_SIZE (1 << 20)
// Bytes one direction moves per readiness event before the loop gets a turn for other work.
#define TURN_BYTES (16u << 20)

typedef struct {
  int from, to;
  int pipe_r, pipe_w;
  size_t in_pipe;  // spliced in from `from`, not yet out to `to`
  uint8_t *pending;
  size_t pending_len, pending_off;
  int eof;   // `from` ended
  int shut;  // `to` shut for writing: this direction is done
  int want_read, want_write;
  uint64_t bytes;
} direction;

typedef struct {
  uv_poll_t poll[2];  // poll[0] on fd a, poll[1] on fd b
  int fd[2];
  direction d[2];     // d[0]: a -> b, d[1]: b -> a
  napi_env env;
  napi_ref done;
  napi_async_context async;
  int closing, err, handles;
} relay;

static int pump(direction *d) {
  d->want_read = d->want_write = 0;
  size_t moved = 0;
  for (;;) {
    if (moved >= TURN_BYTES) {
      // Fair to the loop: the poll is level-triggered, so this direction is called again.
      if (d->in_pipe > 0 || d->pending_off < d->pending_len) d->want_write = 1;
      else d->want_read = 1;
      return 0;
    }
    ssize_t n;
    if (d->pending_off < d->pending_len) {
      n = send(d->to, d->pending + d->pending_off, d->pending_len - d->pending_off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return d->want_write = 1, 0;
      if (n < 0) return -errno;
      d->pending_off += (size_t)n;
      d->bytes += (uint64_t)n;
      moved += (size_t)n;
      continue;
    }
    if (d->in_pipe > 0) {
      n = splice(d->pipe_r, NULL, d->to, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return d->want_write = 1, 0;
      if (n <= 0) return n < 0 ? -errno : -EPIPE;
      d->in_pipe -= (size_t)n;
      d->bytes += (uint64_t)n;
      moved += (size_t)n;
      continue;
    }
    if (d->eof) {
      if (!d->shut && shutdown(d->to, SHUT_WR) < 0 && errno != ENOTCONN) return -errno;
      d->shut = 1;
      return 0;
    }
    // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
    n = splice(d->from, NULL, d->pipe_w, NULL, PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return d->want_read = 1, 0;
    if (n < 0) return -errno;
    if (n == 0) d->eof = 1;
    else d->in_pipe += (size_t)n;
  }
}

static void on_env_cleanup(void *data);

static void on_closed(uv_handle_t *handle) {
  relay *r = (relay *)handle->data;
  if (--r->handles > 0) return;
  for (int i = 0; i < 2; i++) {
    close(r->fd[i]);
    close(r->d[i].pipe_r);
    close(r->d[i].pipe_w);
    free(r->d[i].pending);
  }
  napi_env env = r->env;
  napi_remove_env_cleanup_hook(env, on_env_cleanup, r);
  napi_handle_scope scope;
  napi_value fn, recv, argv[3], result;
  napi_open_handle_scope(env, &scope);
  napi_get_reference_value(env, r->done, &fn);
  napi_get_global(env, &recv);
  napi_create_int32(env, r->err, &argv[0]);
  napi_create_double(env, (double)r->d[0].bytes, &argv[1]);
  napi_create_double(env, (double)r->d[1].bytes, &argv[2]);
  napi_status st = napi_make_callback(env, r->async, recv, fn, 3, argv, &result);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
  napi_delete_reference(env, r->done);
  napi_async_destroy(env, r->async);
  free(r);
}

static void finish(relay *r, int err) {
  if (r->closing) return;
  r->closing = 1;
  r->err = err;
  if (err != 0 && err != -ECANCELED) {
    // A failed relay resets both connections: a plain close would send a FIN, and the other
    // end would take a cut-off stream for a complete one.
    struct linger reset = {1, 0};
    for (int i = 0; i < 2; i++) setsockopt(r->fd[i], SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  for (int i = 0; i < 2; i++) {
    uv_poll_stop(&r->poll[i]);
    uv_close((uv_handle_t *)&r->poll[i], on_closed);
  }
}

static void on_env_cleanup(void *data) {
  finish((relay *)data, -ECANCELED);
}

static void on_poll(uv_poll_t *poll, int status, int events);

static void step(relay *r) {
  for (int i = 0; i < 2; i++) {
    if (r->d[i].shut) continue;
    int e = pump(&r->d[i]);
    if (e < 0) return finish(r, e);
  }
  if (r->d[0].shut && r->d[1].shut) return finish(r, 0);
  // fd a reads for a -> b and writes for b -> a; fd b the other way round.
  for (int i = 0; i < 2; i++) {
    int events = (r->d[i].want_read ? UV_READABLE : 0) | (r->d[1 - i].want_write ? UV_WRITABLE : 0);
    int e = events ? uv_poll_start(&r->poll[i], events, on_poll) : uv_poll_stop(&r->poll[i]);
    if (e < 0) return finish(r, e);
  }
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  relay *r = (relay *)poll->data;
  if (r->closing) return;
  if (status < 0) return finish(r, status);
  step(r);
}

static napi_value fail(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

#define CALL(x) do { if ((x) != napi_ok) return fail(env, "ERR_SPLICE_RELAY", #x); } while (0)

// A copy of `value`'s bytes (a Buffer, or null/undefined for none).
static int copy_pending(napi_env env, napi_value value, direction *d) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return -1;
  if (type == napi_null || type == napi_undefined) return 0;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, value, &data, &len) != napi_ok) return -1;
  if (len == 0) return 0;
  d->pending = malloc(len);
  if (!d->pending) return -1;
  memcpy(d->pending, data, len);
  d->pending_len = len;
  return 0;
}

static void release_partial(relay *r) {
  for (int i = 0; i < 2; i++) {
    if (r->fd[i] >= 0) close(r->fd[i]);
    if (r->d[i].pipe_r >= 0) close(r->d[i].pipe_r);
    if (r->d[i].pipe_w >= 0) close(r->d[i].pipe_w);
    free(r->d[i].pending);
  }
  free(r);
}

static void on_handle_gc(napi_env env, void *data, void *hint) {}

static napi_value Relay(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CALL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return fail(env, "ERR_SPLICE_RELAY", "relay(fdA, fdB, pendingAB, pendingBA, done)");
  int32_t fds[2];
  CALL(napi_get_value_int32(env, argv[0], &fds[0]));
  CALL(napi_get_value_int32(env, argv[1], &fds[1]));
  relay *r = calloc(1, sizeof(relay));
  if (!r) return fail(env, "ENOMEM", "out of memory");
  for (int i = 0; i < 2; i++) r->fd[i] = r->d[i].pipe_r = r->d[i].pipe_w = -1;
  for (int i = 0; i < 2; i++) {
    if (copy_pending(env, argv[2 + i], &r->d[i]) < 0) return release_partial(r), fail(env, "ERR_SPLICE_RELAY", "pending bytes must be a Buffer or null");
    r->fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    int p[2];
    if (r->fd[i] < 0 || fcntl(r->fd[i], F_SETFL, fcntl(r->fd[i], F_GETFL) | O_NONBLOCK) < 0 || pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
      int e = errno;
      release_partial(r);
      return fail(env, "ERR_SPLICE_RELAY", strerror(e));
    }
    r->d[i].pipe_r = p[0];
    r->d[i].pipe_w = p[1];
    fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);  // a refusal (over /proc/sys/fs/pipe-max-size) keeps 64 KiB
  }
  r->d[0].from = r->fd[0], r->d[0].to = r->fd[1];
  r->d[1].from = r->fd[1], r->d[1].to = r->fd[0];
  uv_loop_t *loop;
  CALL(napi_get_uv_event_loop(env, &loop));
  for (int i = 0; i < 2; i++) {
    int e = uv_poll_init(loop, &r->poll[i], r->fd[i]);
    if (e < 0) {
      // The first handle, if made, must be closed through the loop before the memory goes.
      if (i == 1) {
        r->handles = 1;
        r->poll[0].data = r;
        r->err = e;
        r->closing = 1;
        uv_close((uv_handle_t *)&r->poll[0], NULL);
      }
      release_partial(r);
      return fail(env, "ERR_SPLICE_RELAY", uv_strerror(e));
    }
    r->poll[i].data = r;
  }
  r->handles = 2;
  r->env = env;
  napi_value name;
  CALL(napi_create_reference(env, argv[4], 1, &r->done));
  CALL(napi_create_string_utf8(env, "spliceRelay", NAPI_AUTO_LENGTH, &name));
  CALL(napi_async_init(env, NULL, name, &r->async));
  CALL(napi_add_env_cleanup_hook(env, on_env_cleanup, r));
  // Start as if both sockets were ready: bytes waiting already move now.
  step(r);
  napi_value handle;
  CALL(napi_create_external(env, r, on_handle_gc, NULL, &handle));
  return handle;
}

static napi_value Destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  CALL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) return fail(env, "ERR_SPLICE_RELAY", "destroy(handle)");
  finish((relay *)data, -ECANCELED);
  return NULL;
}

// dup(fd): a new descriptor (close-on-exec) of the same connection, for a socket moving to
// another thread (core/socket-handover.ts): Node cannot move a socket between threads, and
// closing the old descriptor then drops it without a FIN, as for a relay.
static napi_value Dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CALL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return fail(env, "ERR_SPLICE_RELAY", "dup(fd)");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return fail(env, "ERR_SPLICE_RELAY", strerror(errno));
  napi_value out;
  CALL(napi_create_int32(env, copy, &out));
  return out;
}

// socketpair(): [fd, fd], two connected Unix stream sockets (close-on-exec). A thread keeps
// one end and gives the other away (core/socket-handover.ts): a byte stream between two
// threads that Node's event loops read like any socket.
static napi_value SocketPair(napi_env env, napi_callback_info info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) return fail(env, "ERR_SPLICE_RELAY", strerror(errno));
  napi_value out, a, b;
  CALL(napi_create_array_with_length(env, 2, &out));
  CALL(napi_create_int32(env, fds[0], &a));
  CALL(napi_create_int32(env, fds[1], &b));
  CALL(napi_set_element(env, out, 0, a));
  CALL(napi_set_element(env, out, 1, b));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  CALL(napi_create_function(env, "socketpair", NAPI_AUTO_LENGTH, SocketPair, NULL, &fn));
  CALL(napi_set_named_property(env, exports, "socketpair", fn));
  CALL(napi_create_function(env, "dup", NAPI_AUTO_LENGTH, Dup, NULL, &fn));
  CALL(napi_set_named_property(env, exports, "dup", fn));
  CALL(napi_create_function(env, "relay", NAPI_AUTO_LENGTH, Relay, NULL, &fn));
  CALL(napi_set_named_property(env, exports, "relay", fn));
  CALL(napi_create_function(env, "destroy", NAPI_AUTO_LENGTH, Destroy, NULL, &fn));
  CALL(napi_set_named_property(env, exports, "destroy", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
