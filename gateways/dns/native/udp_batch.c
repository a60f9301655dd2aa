// The DNS gateway's UDP socket, read and written in batches: recvmmsg takes up to SLOTS
// queries per system call, JavaScript answers the whole batch in one call, and sendmmsg sends
// the answers in one system call. Node's dgram costs a JavaScript call, a `message` event, an
// address string and a send request per datagram, twice the CPU of the answer itself, and
// cannot batch sends. Linux only (recvmmsg/sendmmsg); the gateway falls back to dgram where
// this module is not built.
//
// JavaScript sees three buffers, made once per socket and reused for every batch:
//   in:   SLOTS slots of IN_SLOT bytes, query i in slot i;
//   out:  SLOTS slots of OUT_SLOT bytes, the answer to query i in slot i;
//   meta: SLOTS records of META bytes: [0-1] query length (0xffff: longer than a slot),
//         [2-3] source port, [4] family (4 or 6), [6-7] answer length set by JavaScript
//         (0: no answer), [8-23] source address (4 or 16 bytes), all network byte order.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOTS 64
#define IN_SLOT 2048
#define OUT_SLOT 4096
#define META 24
// Batches read per readiness event before the loop gets a turn for other work.
#define ROUNDS 16

typedef struct {
  uv_poll_t poll;  // first: the uv handle's address is the struct's
  int fd;
  int closing;
  napi_env env;
  napi_ref on_batch, in_ref, out_ref, meta_ref;
  napi_async_context async;
  uint8_t *in, *out, *meta;
  struct mmsghdr recv[SLOTS], send[SLOTS];
  struct iovec recv_iov[SLOTS], send_iov[SLOTS];
  struct sockaddr_storage from[SLOTS];
} batch_socket;

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// One datagram of a batch: `len` bytes at `data`, from or to `addr`.
static void set_message(struct mmsghdr *msg, struct iovec *iov, uint8_t *data, size_t len, struct sockaddr_storage *addr, socklen_t addr_len) {
  iov->iov_base = data;
  iov->iov_len = len;
  memset(&msg->msg_hdr, 0, sizeof(struct msghdr));
  msg->msg_hdr.msg_iov = iov;
  msg->msg_hdr.msg_iovlen = 1;
  msg->msg_hdr.msg_name = addr;
  msg->msg_hdr.msg_namelen = addr_len;
}

static int read_batch(batch_socket *s) {
  for (int i = 0; i < SLOTS; i++) set_message(&s->recv[i], &s->recv_iov[i], s->in + (size_t)i * IN_SLOT, IN_SLOT, &s->from[i], sizeof(struct sockaddr_storage));
  int n;
  do n = recvmmsg(s->fd, s->recv, SLOTS, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return 0;
  for (int i = 0; i < n; i++) {
    uint8_t *m = s->meta + (size_t)i * META;
    memset(m, 0, META);
    put16(m, (s->recv[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0xffff : s->recv[i].msg_len);
    if (s->from[i].ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->from[i];
      memcpy(m + 2, &a->sin6_port, 2);
      m[4] = 6;
      memcpy(m + 8, &a->sin6_addr, 16);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&s->from[i];
      memcpy(m + 2, &a->sin_port, 2);
      m[4] = 4;
      memcpy(m + 8, &a->sin_addr, 4);
    }
  }
  return n;
}

// Calls JavaScript's onBatch(n); false when it threw (the exception is raised as uncaught).
static int answer_batch(batch_socket *s, int n) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_value fn, recv, argv[1], result;
  napi_open_handle_scope(env, &scope);
  napi_get_reference_value(env, s->on_batch, &fn);
  napi_get_global(env, &recv);
  napi_create_uint32(env, (uint32_t)n, &argv[0]);
  napi_status st = napi_make_callback(env, s->async, recv, fn, 1, argv, &result);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
  return st == napi_ok;
}

static void send_batch(batch_socket *s, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    const uint8_t *m = s->meta + (size_t)i * META;
    unsigned len = ((unsigned)m[6] << 8) | m[7];
    if (len == 0 || len > OUT_SLOT) continue;
    set_message(&s->send[k], &s->send_iov[k], s->out + (size_t)i * OUT_SLOT, len, &s->from[i], s->recv[i].msg_hdr.msg_namelen);
    k++;
  }
  for (int sent = 0; sent < k;) {
    int r = sendmmsg(s->fd, s->send + sent, (unsigned)(k - sent), MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      // Full send buffer (EAGAIN) or an unreachable asker: skip that answer, as a server
      // whose sendto failed would; DNS clients retry.
      sent++;
      continue;
    }
    sent += r;
  }
}

static void on_readable(uv_poll_t *poll, int status, int events) {
  batch_socket *s = (batch_socket *)poll;
  if (status < 0) return;
  for (int round = 0; round < ROUNDS && !s->closing; round++) {
    int n = read_batch(s);
    if (n == 0) return;
    if (!answer_batch(s, n) || s->closing) return;
    send_batch(s, n);
    if (n < SLOTS) return;
  }
}

static void on_closed(uv_handle_t *handle);

static void stop(batch_socket *s) {
  s->closing = 1;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_closed);
}

// The environment ends (a worker thread exits) with the socket open: close it.
static void on_env_cleanup(void *data) {
  stop((batch_socket *)data);
}

static void on_closed(uv_handle_t *handle) {
  batch_socket *s = (batch_socket *)handle;
  close(s->fd);
  free(s);
}

static napi_value fail(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

#define CALL(x) do { if ((x) != napi_ok) return fail(env, "ERR_UDP_BATCH", #x); } while (0)

// open(family: 4 | 6, ip: string, port: number, onBatch: (n: number) => void)
//   -> { handle, in, out, meta, port }
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CALL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return fail(env, "ERR_UDP_BATCH", "open(family, ip, port, onBatch)");
  uint32_t family, port;
  char ip[INET6_ADDRSTRLEN + 1];
  size_t ip_len;
  CALL(napi_get_value_uint32(env, argv[0], &family));
  CALL(napi_get_value_string_utf8(env, argv[1], ip, sizeof ip, &ip_len));
  CALL(napi_get_value_uint32(env, argv[2], &port));
  if (port > 65535) return fail(env, "ERR_UDP_BATCH", "port out of range");

  struct sockaddr_storage addr;
  socklen_t addr_len;
  memset(&addr, 0, sizeof addr);
  if (family == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) return fail(env, "EINVAL", "not an IPv6 address");
    addr_len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&addr;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) return fail(env, "EINVAL", "not an IPv4 address");
    addr_len = sizeof *a;
  }
  int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "ESOCKET", strerror(errno));
  if (bind(fd, (struct sockaddr *)&addr, addr_len) < 0 || getsockname(fd, (struct sockaddr *)&addr, &addr_len) < 0) {
    int e = errno;
    close(fd);
    return fail(env, e == EADDRINUSE ? "EADDRINUSE" : e == EACCES ? "EACCES" : e == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : "EBIND", strerror(e));
  }

  batch_socket *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return fail(env, "ENOMEM", "out of memory");
  }
  s->fd = fd;
  s->env = env;
  napi_value in, out, meta, name, handle, bound_port, result;
  void *data;
  CALL(napi_create_buffer(env, (size_t)SLOTS * IN_SLOT, &data, &in));
  s->in = data;
  CALL(napi_create_buffer(env, (size_t)SLOTS * OUT_SLOT, &data, &out));
  s->out = data;
  CALL(napi_create_buffer(env, (size_t)SLOTS * META, &data, &meta));
  s->meta = data;
  CALL(napi_create_reference(env, in, 1, &s->in_ref));
  CALL(napi_create_reference(env, out, 1, &s->out_ref));
  CALL(napi_create_reference(env, meta, 1, &s->meta_ref));
  CALL(napi_create_reference(env, argv[3], 1, &s->on_batch));
  CALL(napi_create_string_utf8(env, "DNS_UDP_BATCH", NAPI_AUTO_LENGTH, &name));
  CALL(napi_async_init(env, NULL, name, &s->async));
  uv_loop_t *loop;
  CALL(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &s->poll, fd);
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  CALL(napi_add_env_cleanup_hook(env, on_env_cleanup, s));

  CALL(napi_create_external(env, s, NULL, NULL, &handle));
  uint16_t p = addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port : ((struct sockaddr_in *)&addr)->sin_port;
  CALL(napi_create_uint32(env, ntohs(p), &bound_port));
  CALL(napi_create_object(env, &result));
  CALL(napi_set_named_property(env, result, "handle", handle));
  CALL(napi_set_named_property(env, result, "in", in));
  CALL(napi_set_named_property(env, result, "out", out));
  CALL(napi_set_named_property(env, result, "meta", meta));
  CALL(napi_set_named_property(env, result, "port", bound_port));
  return result;
}

// close(handle): stops reading and closes the socket; calling it again does nothing.
static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  CALL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) return fail(env, "ERR_UDP_BATCH", "close(handle)");
  batch_socket *s = data;
  if (s->closing) return NULL;
  napi_remove_env_cleanup_hook(env, on_env_cleanup, s);
  napi_delete_reference(env, s->on_batch);
  napi_delete_reference(env, s->in_ref);
  napi_delete_reference(env, s->out_ref);
  napi_delete_reference(env, s->meta_ref);
  napi_async_destroy(env, s->async);
  stop(s);
  return NULL;
}

static void export_uint(napi_env env, napi_value exports, const char *name, uint32_t v) {
  napi_value value;
  napi_create_uint32(env, v, &value);
  napi_set_named_property(env, exports, name, value);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, Open, NULL, &fn);
  napi_set_named_property(env, exports, "open", fn);
  napi_create_function(env, "close", NAPI_AUTO_LENGTH, Close, NULL, &fn);
  napi_set_named_property(env, exports, "close", fn);
  export_uint(env, exports, "SLOTS", SLOTS);
  export_uint(env, exports, "IN_SLOT", IN_SLOT);
  export_uint(env, exports, "OUT_SLOT", OUT_SLOT);
  export_uint(env, exports, "META", META);
  return exports;
}
