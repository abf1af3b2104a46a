/* mbtest-nfq-fast: the native fast path of the middlebox engine for every-packet behaviours.
 *
 * The Python engine is the reference: it installs the netfilter rules, and for `pass` and
 * `payload-flip` it starts this program on its queue instead of serving the queue itself.
 * Semantics and the ground-truth log lines are the same as the Python behaviours'
 * (mbtest/middlebox/behaviours.py, flows.py, engine.Log): the netns tests check both.
 *
 *   mbtest-nfq-fast --queue N --log FILE --behaviour pass|payload-flip
 *                   [--every N] [--segment K] [--offset O] [--count C]
 *                   [--direction c2s|s2c|both]
 *
 * Prints "ready" once bound; SIGTERM or SIGINT: drains, flushes the log, writes
 * FILE.stats.json ({"packets": ..., "changes": ...}) and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum behaviour { PASS, PAYLOAD_FLIP };
enum { C2S = 0, S2C = 1, UNKNOWN = 2 };
static const char *ARROW[] = {"c>s", "s>c", "?"};

static struct {
	enum behaviour behaviour;
	long every, segment, offset, count;
	int direction; /* C2S, S2C, or -1 for both */
} cfg = {PASS, 1, 0, 0, 1, C2S};

static volatile sig_atomic_t stopping;
static FILE *logf;
static unsigned long long packets, changes;

/* --- flows (flows.py: FlowTracker.observe) ----------------------------------------------- */

struct endpoint {
	unsigned char raw[18]; /* address + port, as the Python tracker keys them */
	int len;
};

struct flow {
	int used;
	struct endpoint lo, hi; /* the key: both endpoints, ordered by their raw bytes */
	int has_initiator;
	struct endpoint initiator;
	unsigned long pkts[3], data[3];
	int established[3], third_ack_seen; /* as flows.py: the "first" and "third-ack" classes */
	char name[160];
};

#define FLOWS 65536 /* open addressing; a testbed run holds a handful of flows */
static struct flow *flows;

static int ep_cmp(const struct endpoint *a, const struct endpoint *b)
{
	int n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->raw, b->raw, n);
	return c ? c : a->len - b->len;
}

static unsigned hash_key(const struct endpoint *lo, const struct endpoint *hi)
{
	unsigned h = 2166136261u;
	for (int i = 0; i < lo->len; i++)
		h = (h ^ lo->raw[i]) * 16777619u;
	for (int i = 0; i < hi->len; i++)
		h = (h ^ hi->raw[i]) * 16777619u;
	return h;
}

static void fmt_endpoint(char *out, size_t size, int v6, const unsigned char *addr, int port)
{
	char text[INET6_ADDRSTRLEN];
	inet_ntop(v6 ? AF_INET6 : AF_INET, addr, text, sizeof text);
	snprintf(out, size, v6 ? "[%s]:%d" : "%s:%d", text, port);
}

/* --- packets ---------------------------------------------------------------------------- */

struct packet {
	unsigned char *buf;
	int len, v6, ip_len, tcp_hlen, payload_len;
	struct endpoint src, dst;
};

static int parse(struct packet *p, unsigned char *buf, int len)
{
	p->buf = buf;
	p->len = len;
	if (len < 1)
		return -1;
	int version = buf[0] >> 4, end;
	if (version == 4) {
		if (len < 20 || buf[9] != 6)
			return -1;
		p->v6 = 0;
		p->ip_len = (buf[0] & 0x0f) * 4;
		end = (buf[2] << 8) | buf[3];
	} else if (version == 6) {
		if (len < 40)
			return -1;
		int nxt = buf[6], pos = 40;
		while (nxt == 0 || nxt == 43 || nxt == 60) {
			if (pos + 2 > len)
				return -1;
			nxt = buf[pos];
			pos += (buf[pos + 1] + 1) * 8;
		}
		if (nxt != 6)
			return -1;
		p->v6 = 1;
		p->ip_len = pos;
		end = 40 + ((buf[4] << 8) | buf[5]);
	} else {
		return -1;
	}
	if (end > len)
		end = len;
	if (len < p->ip_len + 20)
		return -1;
	p->tcp_hlen = (buf[p->ip_len + 12] >> 4) * 4;
	if (p->tcp_hlen < 20 || p->ip_len + p->tcp_hlen > len)
		return -1;
	p->payload_len = end - p->ip_len - p->tcp_hlen;
	if (p->payload_len < 0)
		p->payload_len = 0;
	int alen = p->v6 ? 16 : 4, s = p->v6 ? 8 : 12, d = p->v6 ? 24 : 16;
	memcpy(p->src.raw, buf + s, alen);
	memcpy(p->src.raw + alen, buf + p->ip_len, 2);
	memcpy(p->dst.raw, buf + d, alen);
	memcpy(p->dst.raw + alen, buf + p->ip_len + 2, 2);
	p->src.len = p->dst.len = alen + 2;
	return 0;
}

static int port_of(const struct endpoint *e)
{
	return (e->raw[e->len - 2] << 8) | e->raw[e->len - 1];
}

struct context {
	struct flow *flow;
	int direction;
	unsigned long index, data_index;
	int first, third; /* first packet of its direction after the handshake; the third ACK */
};

static struct context observe(struct packet *p)
{
	const struct endpoint *lo = &p->src, *hi = &p->dst;
	if (ep_cmp(lo, hi) > 0) {
		lo = &p->dst;
		hi = &p->src;
	}
	unsigned slot = hash_key(lo, hi) & (FLOWS - 1);
	struct flow *f = NULL;
	for (unsigned i = 0; i < FLOWS; i++) {
		struct flow *c = &flows[(slot + i) & (FLOWS - 1)];
		if (!c->used || (!ep_cmp(&c->lo, lo) && !ep_cmp(&c->hi, hi))) {
			f = c;
			break;
		}
	}
	if (f == NULL) { /* full: start over rather than fail */
		memset(flows, 0, sizeof(struct flow) * FLOWS);
		f = &flows[slot];
	}
	int flags = p->buf[p->ip_len + 13];
	int syn = !!(flags & 0x02), ack = !!(flags & 0x10);
	if (!f->used || (syn && !ack && (!f->has_initiator || ep_cmp(&f->initiator, &p->src)))) {
		memset(f, 0, sizeof *f);
		f->used = 1;
		f->lo = *lo;
		f->hi = *hi;
	}
	const unsigned char *sa = p->buf + (p->v6 ? 8 : 12), *da = p->buf + (p->v6 ? 24 : 16);
	char a[64], b[64];
	if (syn && !ack) {
		f->initiator = p->src;
		f->has_initiator = 1;
		fmt_endpoint(a, sizeof a, p->v6, sa, port_of(&p->src));
		fmt_endpoint(b, sizeof b, p->v6, da, port_of(&p->dst));
		snprintf(f->name, sizeof f->name, "%s > %s", a, b);
	} else if (syn && !f->has_initiator) {
		f->initiator = p->dst;
		f->has_initiator = 1;
		fmt_endpoint(a, sizeof a, p->v6, da, port_of(&p->dst));
		fmt_endpoint(b, sizeof b, p->v6, sa, port_of(&p->src));
		snprintf(f->name, sizeof f->name, "%s > %s", a, b);
	}
	struct context ctx = {f, UNKNOWN, 0, 0, 0, 0};
	if (f->has_initiator)
		ctx.direction = ep_cmp(&f->initiator, &p->src) ? S2C : C2S;
	if (!f->name[0]) {
		fmt_endpoint(a, sizeof a, p->v6, sa, port_of(&p->src));
		fmt_endpoint(b, sizeof b, p->v6, da, port_of(&p->dst));
		snprintf(f->name, sizeof f->name, "%s > %s", a, b);
	}
	ctx.index = ++f->pkts[ctx.direction];
	if (!syn && ack && ctx.direction == C2S && !f->third_ack_seen)
		f->third_ack_seen = ctx.third = 1;
	if (!syn && !f->established[ctx.direction])
		f->established[ctx.direction] = ctx.first = 1;
	if (!syn && p->payload_len > 0)
		ctx.data_index = ++f->data[ctx.direction];
	return ctx;
}

/* RFC 1624: update the TCP checksum for bytes changed in place, word by word. */
static void patch(struct packet *p, int start, const unsigned char *new_bytes, int n)
{
	unsigned char *tcp = p->buf + p->ip_len;
	int rel = start - p->ip_len;
	int first = rel & ~1, last = (rel + n + 1) & ~1;
	uint32_t sum = (uint16_t)~((tcp[16] << 8) | tcp[17]);
	for (int w = first; w < last; w += 2) {
		uint16_t old = (tcp[w] << 8) | (w + 1 < p->len - p->ip_len ? tcp[w + 1] : 0);
		sum += (uint16_t)~old;
	}
	memcpy(p->buf + start, new_bytes, n);
	for (int w = first; w < last; w += 2) {
		uint16_t now = (tcp[w] << 8) | (w + 1 < p->len - p->ip_len ? tcp[w + 1] : 0);
		sum += now;
	}
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t check = ~sum & 0xffff;
	tcp[16] = check >> 8;
	tcp[17] = check & 0xff;
}

static void hex(char *out, const unsigned char *bytes, int n)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = 0;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* behaviours.py: PayloadFlip.handle. Returns 1 when the packet was modified. */
static int payload_flip(struct packet *p, const struct context *ctx)
{
	if (!ctx->data_index)
		return 0;
	if (cfg.direction >= 0 && cfg.direction != ctx->direction)
		return 0;
	int wanted = cfg.segment ? (long)ctx->data_index == cfg.segment
				 : ctx->data_index % cfg.every == 0;
	if (!wanted || cfg.offset >= p->payload_len)
		return 0;
	int start = p->ip_len + p->tcp_hlen + cfg.offset;
	long end = cfg.offset + cfg.count < p->payload_len ? cfg.offset + cfg.count : p->payload_len;
	int n = end - cfg.offset;
	static unsigned char before[65536], after[65536];
	memcpy(before, p->buf + start, n);
	for (int i = 0; i < n; i++)
		after[i] = before[i] ^ 0xff;
	patch(p, start, after, n);
	static char hb[131073], ha[131073];
	hex(hb, before, n);
	hex(ha, after, n);
	const unsigned char *t = p->buf + p->ip_len;
	unsigned long seq = ((unsigned long)t[4] << 24) | (t[5] << 16) | (t[6] << 8) | t[7];
	struct timeval now;
	gettimeofday(&now, NULL);
	fprintf(logf, "{\"t\": %ld.%06ld, \"behaviour\": \"payload-flip\", \"flow\": ",
		(long)now.tv_sec, (long)now.tv_usec);
	json_string(logf, ctx->flow->name);
	/* the segment's classes, sorted as base.change() writes them (it carries data) */
	const char *classes = ctx->first ? (ctx->third ? "\"data\", \"first\", \"third-ack\""
						     : "\"data\", \"first\"")
					 : (ctx->third ? "\"data\", \"third-ack\"" : "\"data\"");
	fprintf(logf,
		", \"direction\": \"%s\", \"packet\": %lu, \"seq\": %lu, \"flags\": %d, "
		"\"segment\": [%s], \"payload\": %d, "
		"\"field\": \"payload[%ld:%ld]\", \"before\": \"%s\", \"after\": \"%s\"}\n",
		ARROW[ctx->direction], ctx->index, seq, t[13], classes, p->payload_len, cfg.offset,
		end, hb, ha);
	changes++;
	return 1;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
		     void *data)
{
	(void)msg;
	(void)data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	uint32_t id = ph ? ntohl(ph->packet_id) : 0;
	unsigned char *payload;
	int len = nfq_get_payload(nfa, &payload);
	packets++;
	struct packet p;
	if (len < 0 || parse(&p, payload, len) < 0)
		return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
	struct context ctx = observe(&p);
	if (cfg.behaviour == PAYLOAD_FLIP && payload_flip(&p, &ctx))
		return nfq_set_verdict(qh, id, NF_ACCEPT, len, payload);
	return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
}

static void on_signal(int signum)
{
	(void)signum;
	stopping = 1;
}

static int usage(const char *why)
{
	fprintf(stderr, "mbtest-nfq-fast: %s\n", why);
	return 2;
}

int main(int argc, char **argv)
{
	int queue = 0;
	const char *log_path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (value == NULL)
			return usage("every option needs a value");
		i++;
		if (!strcmp(arg, "--queue"))
			queue = atoi(value);
		else if (!strcmp(arg, "--log"))
			log_path = value;
		else if (!strcmp(arg, "--behaviour")) {
			if (!strcmp(value, "pass"))
				cfg.behaviour = PASS;
			else if (!strcmp(value, "payload-flip"))
				cfg.behaviour = PAYLOAD_FLIP;
			else
				return usage("behaviour must be pass or payload-flip");
		} else if (!strcmp(arg, "--every"))
			cfg.every = atol(value);
		else if (!strcmp(arg, "--segment"))
			cfg.segment = atol(value);
		else if (!strcmp(arg, "--offset"))
			cfg.offset = atol(value);
		else if (!strcmp(arg, "--count"))
			cfg.count = atol(value);
		else if (!strcmp(arg, "--direction"))
			cfg.direction = !strcmp(value, "c2s") ? C2S : !strcmp(value, "s2c") ? S2C : -1;
		else
			return usage("unknown option");
	}
	if (log_path == NULL || cfg.every < 1 || cfg.count < 1 || cfg.count > 65535)
		return usage("needs --log, and every >= 1, 1 <= count <= 65535");
	flows = calloc(FLOWS, sizeof(struct flow));
	logf = fopen(log_path, "a");
	if (flows == NULL || logf == NULL)
		return usage("cannot allocate the flow table or open the log");
	setvbuf(logf, NULL, _IOFBF, 1 << 20);
	/* no SA_RESTART: a stop signal makes the blocking recv return at once (EINTR) */
	struct sigaction stop = {0};
	stop.sa_handler = on_signal;
	sigemptyset(&stop.sa_mask);
	sigaction(SIGTERM, &stop, NULL);
	sigaction(SIGINT, &stop, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM); /* the engine that started it died: stop serving too */
	if (getppid() == 1)
		return usage("the engine that started it is gone");

	struct nfq_handle *h = nfq_open();
	if (h == NULL)
		return usage("nfq_open failed (root, and nfnetlink_queue in the kernel?)");
	struct nfq_q_handle *qh = nfq_create_queue(h, queue, &on_packet, NULL);
	if (qh == NULL)
		return usage("cannot bind the queue (is another process on it?)");
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0)
		return usage("cannot set the copy mode");
	nfq_set_queue_maxlen(qh, 4096);
	nfnl_rcvbufsiz(nfq_nfnlh(h), 16 << 20);
	int fd = nfq_fd(h);
	struct timeval tick = {0, 100000}; /* wake up to see SIGTERM */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
	printf("ready\n");
	fflush(stdout);

	static char buf[1 << 17] __attribute__((aligned));
	while (!stopping) {
		int rv = recv(fd, buf, sizeof buf, 0);
		if (rv >= 0) {
			nfq_handle_packet(h, buf, rv);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) {
			fflush(logf);
			continue;
		}
		fprintf(stderr, "mbtest-nfq-fast: recv: %s\n", strerror(errno));
		break;
	}
	/* drain: the rules are gone by now; give what is still queued its verdict (nothing
	 * new can come, so what is not queued already is not waited for) */
	for (int rv; (rv = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0;)
		nfq_handle_packet(h, buf, rv);
	nfq_destroy_queue(qh);
	nfq_close(h);
	fclose(logf);
	char stats_path[4096];
	snprintf(stats_path, sizeof stats_path, "%s.stats.json", log_path);
	FILE *stats = fopen(stats_path, "w");
	if (stats) {
		fprintf(stats, "{\"packets\": %llu, \"changes\": %llu, \"engine\": \"native\"}",
			packets, changes);
		fclose(stats);
	}
	return 0;
}
