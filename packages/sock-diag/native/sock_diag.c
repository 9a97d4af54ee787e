// Exact lookup of one TCP socket through NETLINK_SOCK_DIAG (Linux), for Node through Node-API.
//
// A SOCK_DIAG_BY_FAMILY request without NLM_F_DUMP names one socket by its 4-tuple; the kernel finds it
// with a hash lookup (inet_diag_find_one_icsk) and answers inside sendmsg, so the receive that follows
// never has to wait. Reading /proc/net/tcp instead makes the kernel walk the whole established hash.
//
// Stateless: every call opens, uses and closes its own netlink socket, so any thread may call it.

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

// TCP states as the kernel numbers them (include/net/tcp_states.h; TCP_NEW_SYN_RECV is kernel-only).
enum { STATE_TIME_WAIT = 6, STATE_LISTEN = 10, STATE_NEW_SYN_RECV = 12 };

// Answers are one inet_diag_msg plus a few small attributes; anything bigger is not ours.
#define ANSWER_BUFFER_BYTES 8192

typedef struct {
  int family;          // AF_INET or AF_INET6
  uint8_t local[16];   // 4 bytes used for AF_INET
  uint16_t local_port;
  uint8_t remote[16];
  uint16_t remote_port;
} tuple_t;

typedef struct {
  uint32_t uid;
  uint32_t inode;
  uint8_t state;
} answer_t;

// What failed, for the error message: never an address or a port.
typedef struct {
  int errnum;
  const char *what;
} failure_t;

static uint32_t next_sequence(void) {
  static uint32_t sequence = 0;
  return __atomic_add_fetch(&sequence, 1, __ATOMIC_RELAXED);
}

// An address as IPv6 (IPv4 becomes ::ffff:a.b.c.d), so a v4 tuple and the same tuple on a v4-mapped
// AF_INET6 socket compare equal.
static void as_ipv6(int family, const uint8_t *address, uint8_t out[16]) {
  if (family == AF_INET) {
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, address, 4);
  } else {
    memcpy(out, address, 16);
  }
}

// inet_diag_find_one_icsk falls back to the listener hash when no connected socket has the tuple, and then
// answers with that listener: only an answer for exactly the asked tuple counts.
static int answer_is_for(const tuple_t *asked, const struct inet_diag_msg *got) {
  if (got->idiag_family != AF_INET && got->idiag_family != AF_INET6) return 0;
  if (ntohs(got->id.idiag_sport) != asked->local_port || ntohs(got->id.idiag_dport) != asked->remote_port) return 0;
  uint8_t want[16], have[16];
  as_ipv6(asked->family, asked->local, want);
  as_ipv6(got->idiag_family, (const uint8_t *)got->id.idiag_src, have);
  if (memcmp(want, have, 16) != 0) return 0;
  as_ipv6(asked->family, asked->remote, want);
  as_ipv6(got->idiag_family, (const uint8_t *)got->id.idiag_dst, have);
  return memcmp(want, have, 16) == 0;
}

static int send_request(int fd, const tuple_t *tuple, uint32_t sequence) {
  struct {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
  } message;
  memset(&message, 0, sizeof message);
  message.header.nlmsg_len = NLMSG_LENGTH(sizeof message.request);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: the exact, hashed lookup
  message.header.nlmsg_seq = sequence;
  message.request.sdiag_family = (uint8_t)tuple->family;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  message.request.id.idiag_sport = htons(tuple->local_port);
  message.request.id.idiag_dport = htons(tuple->remote_port);
  size_t length = tuple->family == AF_INET ? 4 : 16;
  memcpy(message.request.id.idiag_src, tuple->local, length);
  memcpy(message.request.id.idiag_dst, tuple->remote, length);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent;
  do {
    sent = sendto(fd, &message, message.header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return errno;
  return sent == (ssize_t)message.header.nlmsg_len ? 0 : EPROTO;
}

// Reads the kernel's answer to `sequence`: 0 with *out filled, ENOENT for no such socket, or an errno.
// MSG_DONTWAIT: the kernel has answered by the time sendto returns; if it has not, this fails, never waits.
static int receive_answer(int fd, const tuple_t *tuple, uint32_t sequence, uint32_t port_id, answer_t *out, failure_t *failure) {
  union {
    struct nlmsghdr align;
    uint8_t bytes[ANSWER_BUFFER_BYTES];
  } buffer;
  for (;;) {
    struct sockaddr_nl from;
    socklen_t from_length = sizeof from;
    ssize_t length = recvfrom(fd, buffer.bytes, sizeof buffer.bytes, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &from_length);
    if (length < 0) {
      if (errno == EINTR) continue;
      failure->what = errno == EAGAIN || errno == EWOULDBLOCK ? "no answer from the kernel (recvfrom)" : "recvfrom";
      return errno;
    }
    if (length > (ssize_t)sizeof buffer.bytes) {
      failure->what = "answer larger than expected";
      return EMSGSIZE;
    }
    // Only the kernel (port 0) may answer; anything else on this socket is ignored.
    if (from_length < sizeof from || from.nl_family != AF_NETLINK || from.nl_pid != 0) continue;

    int remaining = (int)length;
    for (struct nlmsghdr *header = &buffer.align; NLMSG_OK(header, remaining); header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_seq != sequence || header->nlmsg_pid != port_id) continue;
      if (header->nlmsg_type == NLMSG_ERROR) {
        if (header->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
          failure->what = "truncated error answer";
          return EPROTO;
        }
        const struct nlmsgerr *error = NLMSG_DATA(header);
        if (error->error == 0) continue;  // an acknowledgement, not an answer
        failure->what = "kernel answer";
        return error->error < 0 ? -error->error : EPROTO;
      }
      if (header->nlmsg_type == NLMSG_DONE) return ENOENT;
      if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      if (header->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
        failure->what = "truncated socket answer";
        return EPROTO;
      }
      const struct inet_diag_msg *socket_info = NLMSG_DATA(header);
      if (!answer_is_for(tuple, socket_info)) return ENOENT;
      // TIME_WAIT and half-open request sockets have no owner (the kernel reports uid 0, inode 0).
      if (socket_info->idiag_state == STATE_TIME_WAIT || socket_info->idiag_state == STATE_NEW_SYN_RECV) return ENOENT;
      out->uid = socket_info->idiag_uid;
      out->inode = socket_info->idiag_inode;
      out->state = socket_info->idiag_state;
      return 0;
    }
  }
}

// One lookup on a fresh netlink socket: 0 with *out filled, ENOENT when no owned socket has the tuple, else an errno.
static int look_up(const tuple_t *tuple, answer_t *out, failure_t *failure) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    failure->what = "socket(AF_NETLINK, NETLINK_SOCK_DIAG)";
    return errno;
  }
  uint32_t sequence = next_sequence();
  int result = send_request(fd, tuple, sequence);
  if (result != 0) {
    failure->what = "sendto";
  } else {
    // The kernel bound the socket to a port id on send; its answers carry that id.
    struct sockaddr_nl self;
    socklen_t self_length = sizeof self;
    if (getsockname(fd, (struct sockaddr *)&self, &self_length) != 0) {
      failure->what = "getsockname";
      result = errno;
    } else {
      result = receive_answer(fd, tuple, sequence, self.nl_pid, out, failure);
    }
  }
  close(fd);
  return result;
}

// ---- Node-API glue ----

// strerror_r is the GNU variant (returns the text) on glibc and the XSI one (fills the buffer) elsewhere.
static const char *describe_errno(int errnum, char *buffer, size_t size) {
#if defined(__GLIBC__)
  return strerror_r(errnum, buffer, size);
#else
  if (strerror_r(errnum, buffer, size) != 0) snprintf(buffer, size, "errno %d", errnum);
  return buffer;
#endif
}

// "ENOENT" for ENOENT: glibc 2.32+ knows the names; elsewhere the error gets a generic code.
static const char *errno_name(int errnum) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(errnum);
#else
  (void)errnum;
  return NULL;
#endif
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value throw_errno(napi_env env, const failure_t *failure) {
  char text[128];
  const char *description = describe_errno(failure->errnum, text, sizeof text);
  char message[256];
  snprintf(message, sizeof message, "sock_diag %s: %s", failure->what, description);
  const char *code_text = errno_name(failure->errnum);
  napi_value code, message_value, error, errno_value;
  if (napi_create_string_utf8(env, code_text ? code_text : "ERR_SOCK_DIAG", NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok) return NULL;
  if (napi_create_error(env, code, message_value, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, failure->errnum, &errno_value) == napi_ok) napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

// A port: an integer 0..65535.
static int read_port(napi_env env, napi_value value, uint16_t *out) {
  napi_valuetype type;
  double number;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) return 0;
  if (napi_get_value_double(env, value, &number) != napi_ok) return 0;
  if (!(number >= 0 && number <= 65535) || number != (double)(uint32_t)number) return 0;
  *out = (uint16_t)number;
  return 1;
}

// Address bytes: a Uint8Array (or Buffer) of exactly `length` bytes.
static int read_address(napi_env env, napi_value value, size_t length, uint8_t *out) {
  bool is_typed_array = false;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array) return 0;
  napi_typedarray_type type;
  size_t count;
  void *data;
  if (napi_get_typedarray_info(env, value, &type, &count, &data, NULL, NULL) != napi_ok) return 0;
  if (type != napi_uint8_array || count != length) return 0;
  memcpy(out, data, length);
  return 1;
}

static napi_value answer_object(napi_env env, const answer_t *answer) {
  napi_value object, uid, state, inode;
  if (napi_create_object(env, &object) != napi_ok) return NULL;
  if (napi_create_uint32(env, answer->uid, &uid) != napi_ok) return NULL;
  if (napi_create_uint32(env, answer->state, &state) != napi_ok) return NULL;
  if (napi_create_uint32(env, answer->inode, &inode) != napi_ok) return NULL;
  napi_set_named_property(env, object, "uid", uid);
  napi_set_named_property(env, object, "state", state);
  napi_set_named_property(env, object, "inode", inode);
  return object;
}

// lookup(family: 4 | 6, local: Uint8Array, localPort: number, remote: Uint8Array, remotePort: number)
//   -> { uid, state, inode } | null   (null: no socket with an owner has exactly this tuple)
static napi_value js_lookup(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 5) return throw_type_error(env, "lookup(family, local, localPort, remote, remotePort) takes 5 arguments");

  int32_t family;
  napi_valuetype type;
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number || napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6)) {
    return throw_type_error(env, "family must be 4 or 6");
  }
  tuple_t tuple;
  memset(&tuple, 0, sizeof tuple);
  tuple.family = family == 4 ? AF_INET : AF_INET6;
  size_t length = family == 4 ? 4 : 16;
  if (!read_address(env, argv[1], length, tuple.local)) return throw_type_error(env, family == 4 ? "local address must be a Uint8Array of 4 bytes" : "local address must be a Uint8Array of 16 bytes");
  if (!read_port(env, argv[2], &tuple.local_port)) return throw_type_error(env, "local port must be an integer from 0 to 65535");
  if (!read_address(env, argv[3], length, tuple.remote)) return throw_type_error(env, family == 4 ? "remote address must be a Uint8Array of 4 bytes" : "remote address must be a Uint8Array of 16 bytes");
  if (!read_port(env, argv[4], &tuple.remote_port)) return throw_type_error(env, "remote port must be an integer from 0 to 65535");

  answer_t answer;
  failure_t failure = {0, ""};
  int result = look_up(&tuple, &answer, &failure);
  if (result == ENOENT) {
    napi_value null_value;
    napi_get_null(env, &null_value);
    return null_value;
  }
  if (result != 0) {
    failure.errnum = result;
    return throw_errno(env, &failure);
  }
  return answer_object(env, &answer);
}

// selfTest() -> { inode, found: { uid, state, inode } | null }
// Opens a TCP listener on 127.0.0.1 and looks it up by its own tuple, so a caller can tell a kernel whose
// sock_diag answers (found.inode === inode) from one without inet_diag/tcp_diag, which answers ENOENT to
// every request and would otherwise look like "no such socket" forever.
static napi_value js_self_test(napi_env env, napi_callback_info info) {
  (void)info;
  failure_t failure = {0, ""};
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    failure.errnum = errno;
    failure.what = "self-test socket(AF_INET)";
    return throw_errno(env, &failure);
  }
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  socklen_t address_length = sizeof address;
  struct stat status;
  if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0) failure.what = "self-test bind(127.0.0.1)";
  else if (listen(listener, 1) != 0) failure.what = "self-test listen";
  else if (getsockname(listener, (struct sockaddr *)&address, &address_length) != 0) failure.what = "self-test getsockname";
  else if (fstat(listener, &status) != 0) failure.what = "self-test fstat";
  if (failure.what[0] != '\0') {
    failure.errnum = errno;
    close(listener);
    return throw_errno(env, &failure);
  }

  // A listener's tuple: its own address and port, and a zero remote end.
  tuple_t tuple;
  memset(&tuple, 0, sizeof tuple);
  tuple.family = AF_INET;
  memcpy(tuple.local, &address.sin_addr, 4);
  tuple.local_port = ntohs(address.sin_port);
  answer_t answer;
  int result = look_up(&tuple, &answer, &failure);
  close(listener);
  if (result != 0 && result != ENOENT) {
    failure.errnum = result;
    return throw_errno(env, &failure);
  }

  napi_value object, inode, found;
  if (napi_create_object(env, &object) != napi_ok) return NULL;
  if (napi_create_double(env, (double)status.st_ino, &inode) != napi_ok) return NULL;
  if (result == ENOENT) napi_get_null(env, &found);
  else if ((found = answer_object(env, &answer)) == NULL) return NULL;
  napi_set_named_property(env, object, "inode", inode);
  napi_set_named_property(env, object, "found", found);
  return object;
}

// peerCredentials(fd: number) -> { uid, gid, pid }
// The credentials the kernel recorded for the other end of a connected Unix socket when it connected
// (SO_PEERCRED on Linux; getpeereid on macOS and the BSDs, which give no pid: -1). `fd` is the socket's
// descriptor as libuv holds it; the call only reads from it.
static napi_value js_peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd;
  napi_valuetype type;
  if (argc != 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    return throw_type_error(env, "peerCredentials(fd) takes a file descriptor (an integer >= 0)");
  }
  failure_t failure = {0, ""};
  uint32_t uid, gid;
  int32_t pid;
#if defined(__linux__)
  struct ucred credentials;
  socklen_t length = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    failure.errnum = errno;
    failure.what = "getsockopt(SO_PEERCRED)";
    return throw_errno(env, &failure);
  }
  uid = credentials.uid;
  gid = credentials.gid;
  pid = credentials.pid;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
  uid_t peer_uid;
  gid_t peer_gid;
  if (getpeereid(fd, &peer_uid, &peer_gid) != 0) {
    failure.errnum = errno;
    failure.what = "getpeereid";
    return throw_errno(env, &failure);
  }
  uid = peer_uid;
  gid = peer_gid;
  pid = -1;
#else
  failure.errnum = ENOSYS;
  failure.what = "peer credentials";
  return throw_errno(env, &failure);
#endif
  napi_value object, uid_value, gid_value, pid_value;
  if (napi_create_object(env, &object) != napi_ok) return NULL;
  if (napi_create_uint32(env, uid, &uid_value) != napi_ok) return NULL;
  if (napi_create_uint32(env, gid, &gid_value) != napi_ok) return NULL;
  if (napi_create_int32(env, pid, &pid_value) != napi_ok) return NULL;
  napi_set_named_property(env, object, "uid", uid_value);
  napi_set_named_property(env, object, "gid", gid_value);
  napi_set_named_property(env, object, "pid", pid_value);
  return object;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"lookup", NULL, js_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"selfTest", NULL, js_self_test, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
