#include "okta_sidecar/ratelimit/scheduler.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "okta_sidecar/ratelimit/local_bucket_store.hpp"

namespace okta_sidecar::ratelimit {

namespace {

constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t interactive_lane = 0;
constexpr std::size_t batch_lane = 1;
// Floor for a timer a store asks for in the past, so a confused store cannot make the shell spin.
constexpr duration min_timer_step = std::chrono::milliseconds(1);

enum class node_state : std::uint8_t { free, queued, inflight };

// Okta's SDKs and RFC 9110 §10.2.3 speak whole seconds; 0 would invite an immediate retry.
duration retry_seconds(duration d) {
  auto s = std::chrono::ceil<std::chrono::seconds>(d);
  if (s < std::chrono::seconds(1)) s = std::chrono::seconds(1);
  return s;
}

}  // namespace

struct scheduler::impl {
  struct bucket_entry;
  struct host_entry;

  // One request, queued or in flight. Lives in a slab (`nodes`); its ticket is
  // generation << 32 | (index + 1), so lookups need no map and reused slots reject old ids.
  struct node {
    std::uint32_t generation = 0;
    node_state state = node_state::free;
    bool interactive = false;
    bool rate_limited = true;
    bool in_retry = false;
    std::uint32_t cap_epoch = 0;  // the host cap's epoch when admitted (concurrency_limit)
    std::uint64_t caller = 0;
    time_point deadline{};
    bucket_entry* bucket = nullptr;
    grant granted{};
    std::uint32_t prev = npos, next = npos;  // queue links; `next` doubles as the free list
    std::uint32_t heap_pos = npos;           // position in the deadline heap while queued
  };

  // docs/architecture.md "Performance stance": a queued request costs a few hundred bytes, not a thread.
  static_assert(sizeof(node) <= 128);

  struct fifo {
    std::uint32_t head = npos, tail = npos;
    std::size_t count = 0;
  };
  struct caller_fifo : fifo {
    bool in_ring = false;
  };
  // One priority class of a bucket's queue: retries first (a 429 puts its ticket back at the
  // front), then callers in turn, one request each.
  struct lane {
    fifo retry;
    std::unordered_map<std::uint64_t, caller_fifo> callers;
    std::deque<std::uint64_t> ring;  // callers in turn order; empty ones are dropped lazily
    std::size_t count = 0;
    std::size_t active_callers = 0;
  };
  struct bucket_entry {
    bucket_key key;
    host_entry* host = nullptr;
    lane lanes[2];
    std::uint32_t inflight = 0;
    std::uint32_t capacity_percent = 0;  // from the buckets file; 0 = settings.capacity_percent
    std::optional<time_point> wake;
    bool active = false;    // listed in host->active
    bool instance = false;  // counted in host->instances[group]
    std::string group;
    time_point last_used{};
    std::size_t queued() const { return lanes[0].count + lanes[1].count; }
  };
  struct host_entry {
    std::string name;
    std::uint32_t inflight = 0;
    concurrency_limit limit;
    std::uint64_t fleet_version = 0;  // the fleet's concurrency lesson last adopted
    std::size_t queued = 0;
    std::vector<bucket_entry*> active;  // buckets with queued tickets
    std::size_t rr = 0;                 // rotates which bucket gets a free slot first
    bool dirty = false;
    std::size_t bucket_count = 0;                               // entries in `buckets` of this host
    std::map<std::string, std::size_t, std::less<>> instances;  // group -> instance buckets
  };

  scheduler_settings settings;
  std::unique_ptr<bucket_store> store;
  local_bucket_store* local = nullptr;  // set when we made the store ourselves
  std::vector<node> nodes;
  std::uint32_t free_head = npos;
  std::vector<std::uint32_t> heap;  // queued nodes, earliest deadline on top
  std::map<bucket_key, std::unique_ptr<bucket_entry>> buckets;
  std::map<std::string, std::unique_ptr<host_entry>, std::less<>> hosts;
  std::set<std::pair<time_point, bucket_entry*>> timers;
  std::vector<host_entry*> dirty;
  std::vector<bucket_entry*> scratch;
  std::vector<host_entry*> work;
  std::size_t queued_total = 0;
  std::optional<time_point> last_sweep;

  impl(scheduler_settings s, std::unique_ptr<bucket_store> st) : settings(s), store(std::move(st)) {
    if (!store) {
      auto l = std::make_unique<local_bucket_store>(settings.bucket);
      local = l.get();
      store = std::move(l);
    }
  }

  static concurrency_settings concurrency_for(const scheduler_settings& s) {
    return concurrency_settings{s.initial_concurrency, s.max_concurrency, s.concurrency_backoff,
                                s.concurrency_reprobe};
  }

  // ---- slab -----------------------------------------------------------------------------
  std::uint32_t alloc() {
    std::uint32_t idx;
    if (free_head != npos) {
      idx = free_head;
      free_head = nodes[idx].next;
    } else {
      idx = static_cast<std::uint32_t>(nodes.size());
      nodes.emplace_back();
    }
    node& n = nodes[idx];
    n.prev = n.next = n.heap_pos = npos;
    n.in_retry = false;
    n.granted = grant{};
    return idx;
  }
  void release(std::uint32_t idx) {
    node& n = nodes[idx];
    n.state = node_state::free;
    ++n.generation;
    n.bucket = nullptr;
    n.next = free_head;
    free_head = idx;
  }
  ticket id_of(std::uint32_t idx) const {
    return (static_cast<std::uint64_t>(nodes[idx].generation) << 32) | (idx + 1ull);
  }
  std::optional<std::uint32_t> find(ticket id) const {
    const std::uint64_t low = id & 0xffffffffull;
    if (low == 0 || low > nodes.size()) return std::nullopt;
    const auto idx = static_cast<std::uint32_t>(low - 1);
    const node& n = nodes[idx];
    if (n.state == node_state::free || n.generation != (id >> 32)) return std::nullopt;
    return idx;
  }

  // ---- deadline heap (indexed, so removal is O(log n)) ----------------------------------
  bool earlier(std::uint32_t a, std::uint32_t b) const { return nodes[a].deadline < nodes[b].deadline; }
  void heap_swap(std::size_t i, std::size_t j) {
    std::swap(heap[i], heap[j]);
    nodes[heap[i]].heap_pos = static_cast<std::uint32_t>(i);
    nodes[heap[j]].heap_pos = static_cast<std::uint32_t>(j);
  }
  void sift_up(std::size_t i) {
    while (i > 0) {
      const std::size_t p = (i - 1) / 2;
      if (!earlier(heap[i], heap[p])) break;
      heap_swap(i, p);
      i = p;
    }
  }
  void sift_down(std::size_t i) {
    for (;;) {
      const std::size_t l = 2 * i + 1, r = l + 1;
      std::size_t m = i;
      if (l < heap.size() && earlier(heap[l], heap[m])) m = l;
      if (r < heap.size() && earlier(heap[r], heap[m])) m = r;
      if (m == i) return;
      heap_swap(i, m);
      i = m;
    }
  }
  void heap_push(std::uint32_t idx) {
    heap.push_back(idx);
    nodes[idx].heap_pos = static_cast<std::uint32_t>(heap.size() - 1);
    sift_up(heap.size() - 1);
  }
  void heap_erase(std::uint32_t idx) {
    const std::size_t pos = nodes[idx].heap_pos;
    if (pos == npos) return;
    const std::size_t last = heap.size() - 1;
    if (pos != last) heap_swap(pos, last);
    heap.pop_back();
    nodes[idx].heap_pos = npos;
    if (pos < heap.size()) {
      const std::uint32_t moved = heap[pos];
      sift_up(pos);
      sift_down(nodes[moved].heap_pos);
    }
  }

  // ---- intrusive lists ------------------------------------------------------------------
  void push_back(fifo& f, std::uint32_t idx) {
    node& n = nodes[idx];
    n.prev = f.tail;
    n.next = npos;
    if (f.tail != npos)
      nodes[f.tail].next = idx;
    else
      f.head = idx;
    f.tail = idx;
    ++f.count;
  }
  void push_front(fifo& f, std::uint32_t idx) {
    node& n = nodes[idx];
    n.prev = npos;
    n.next = f.head;
    if (f.head != npos)
      nodes[f.head].prev = idx;
    else
      f.tail = idx;
    f.head = idx;
    ++f.count;
  }
  void unlink(fifo& f, std::uint32_t idx) {
    node& n = nodes[idx];
    if (n.prev != npos)
      nodes[n.prev].next = n.next;
    else
      f.head = n.next;
    if (n.next != npos)
      nodes[n.next].prev = n.prev;
    else
      f.tail = n.prev;
    n.prev = n.next = npos;
    --f.count;
  }

  // ---- buckets, hosts -------------------------------------------------------------------
  // Null when max_buckets entries exist and none is idle: the request is refused rather than
  // letting client-chosen names grow the map (issue 14).
  bucket_entry* bucket_for(const bucket_key& key, time_point now) {
    auto it = buckets.find(key);
    if (it != buckets.end()) {
      it->second->last_used = now;
      return it->second.get();
    }
    if (buckets.size() >= settings.max_buckets && !evict_lru()) return nullptr;
    auto hit = hosts.find(key.host);
    if (hit == hosts.end()) {
      auto h = std::make_unique<host_entry>();
      h->name = key.host;
      h->limit = concurrency_limit(concurrency_for(settings));
      hit = hosts.emplace(key.host, std::move(h)).first;
    }
    auto b = std::make_unique<bucket_entry>();
    b->key = key;
    b->host = hit->second.get();
    b->last_used = now;
    ++b->host->bucket_count;
    return buckets.emplace(key, std::move(b)).first->second.get();
  }

  // ---- eviction (idle TTL, then least recently used) -------------------------------------
  // Idle: nothing queued or in flight and no timer, so no node, heap entry or timer points at it.
  static bool idle(const bucket_entry& b) {
    return b.queued() == 0 && b.inflight == 0 && !b.wake && !b.active;
  }

  void evict(std::map<bucket_key, std::unique_ptr<bucket_entry>>::iterator it) {
    bucket_entry& b = *it->second;
    host_entry& h = *b.host;
    if (b.instance) {
      if (auto g = h.instances.find(b.group); g != h.instances.end() && --g->second == 0)
        h.instances.erase(g);
    }
    store->forget(b.key);
    --h.bucket_count;
    buckets.erase(it);
    // A dirty host is listed in `dirty`; it goes at a later sweep.
    if (h.bucket_count == 0 && h.inflight == 0 && h.queued == 0 && !h.dirty) hosts.erase(h.name);
  }

  bool evict_lru() {
    auto victim = buckets.end();
    for (auto it = buckets.begin(); it != buckets.end(); ++it) {
      if (!idle(*it->second)) continue;
      if (victim == buckets.end() || it->second->last_used < victim->second->last_used) victim = it;
    }
    if (victim == buckets.end()) return false;
    evict(victim);
    return true;
  }

  // Drops buckets idle for bucket_idle_ttl; runs at most every ttl/8 (it walks every bucket).
  void sweep(time_point now) {
    const duration every = std::max<duration>(settings.bucket_idle_ttl / 8, std::chrono::milliseconds(1));
    if (last_sweep && now - *last_sweep < every) return;
    last_sweep = now;
    for (auto it = buckets.begin(); it != buckets.end();) {
      auto next = std::next(it);
      if (idle(*it->second) && now - it->second->last_used >= settings.bucket_idle_ttl) evict(it);
      it = next;
    }
    for (auto it = hosts.begin(); it != hosts.end();) {
      const host_entry& h = *it->second;
      it = h.bucket_count == 0 && h.inflight == 0 && h.queued == 0 && !h.dirty ? hosts.erase(it)
                                                                               : std::next(it);
    }
  }
  void mark_dirty(host_entry& h) {
    if (h.dirty) return;
    h.dirty = true;
    dirty.push_back(&h);
  }
  void set_timer(bucket_entry& b, std::optional<time_point> at, time_point now) {
    if (b.wake) timers.erase({*b.wake, &b});
    b.wake.reset();
    if (!at) return;
    b.wake = std::max(*at, now + min_timer_step);
    timers.emplace(*b.wake, &b);
  }

  // ---- queue ----------------------------------------------------------------------------
  static std::size_t lane_of(const node& n) { return n.interactive ? interactive_lane : batch_lane; }

  void enqueue(std::uint32_t idx, bool at_front) {
    node& n = nodes[idx];
    bucket_entry& b = *n.bucket;
    lane& l = b.lanes[lane_of(n)];
    if (at_front) {
      push_front(l.retry, idx);
      n.in_retry = true;
    } else {
      caller_fifo& cf = l.callers[n.caller];
      if (cf.count == 0) ++l.active_callers;
      push_back(cf, idx);
      if (!cf.in_ring) {
        cf.in_ring = true;
        l.ring.push_back(n.caller);
      }
    }
    ++l.count;
    n.state = node_state::queued;
    heap_push(idx);
    ++b.host->queued;
    ++queued_total;
    if (!b.active) {
      b.active = true;
      b.host->active.push_back(&b);
    }
    mark_dirty(*b.host);
  }

  void dequeue(std::uint32_t idx) {
    node& n = nodes[idx];
    bucket_entry& b = *n.bucket;
    lane& l = b.lanes[lane_of(n)];
    if (n.in_retry) {
      unlink(l.retry, idx);
      n.in_retry = false;
    } else {
      auto it = l.callers.find(n.caller);
      unlink(it->second, idx);
      if (it->second.count == 0) {
        --l.active_callers;
        if (!it->second.in_ring) l.callers.erase(it);
      }
    }
    --l.count;
    heap_erase(idx);
    --b.host->queued;
    --queued_total;
  }

  // The ticket whose turn it is in a lane, or npos.
  std::uint32_t peek(lane& l) {
    if (l.retry.head != npos) return l.retry.head;
    while (!l.ring.empty()) {
      auto it = l.callers.find(l.ring.front());
      if (it != l.callers.end()) {
        if (it->second.count > 0) return it->second.head;
        l.callers.erase(it);
      }
      l.ring.pop_front();
    }
    return npos;
  }

  // Removes the ticket peek() returned and passes the turn to the next caller.
  void pop_turn(lane& l, std::uint32_t idx) {
    const bool from_ring = !nodes[idx].in_retry;
    const std::uint64_t caller = nodes[idx].caller;
    dequeue(idx);
    if (!from_ring) return;
    l.ring.pop_front();
    auto it = l.callers.find(caller);
    if (it == l.callers.end()) return;
    if (it->second.count > 0) {
      l.ring.push_back(caller);
    } else {
      l.callers.erase(it);
    }
  }

  // ---- in flight ------------------------------------------------------------------------
  void start(std::uint32_t idx, const grant& g) {
    node& n = nodes[idx];
    n.state = node_state::inflight;
    n.granted = g;
    n.cap_epoch = n.bucket->host->limit.epoch();
    ++n.bucket->inflight;
    ++n.bucket->host->inflight;
  }
  void finish(std::uint32_t idx) {
    node& n = nodes[idx];
    --n.bucket->inflight;
    --n.bucket->host->inflight;
    mark_dirty(*n.bucket->host);
  }

  std::uint32_t capacity_of(const bucket_entry& b) const {
    const std::uint32_t pct = b.capacity_percent != 0 ? b.capacity_percent : settings.capacity_percent;
    return std::clamp<std::uint32_t>(pct, 1, 100);
  }
  // Share of each window a take must leave: what the capacity ceiling keeps for other
  // integrations (org-wide, like Terraform's max_api_capacity), plus, for batch requests, the
  // interactive reserve out of what is ours.
  double keep_for(const bucket_entry& b, bool interactive) const {
    const double others = 1.0 - static_cast<double>(capacity_of(b)) / 100.0;
    if (interactive) return others;
    return std::min(0.99, others + (1.0 - others) * settings.reserve_fraction);
  }

  // Admits the next ticket of a bucket if its budget allows; false when it is blocked or empty.
  bool admit_one(bucket_entry& b, time_point now, wakeups& out) {
    for (std::size_t li : {interactive_lane, batch_lane}) {
      lane& l = b.lanes[li];
      const std::uint32_t idx = peek(l);
      if (idx == npos) continue;
      grant g{true, false, 0, std::nullopt};
      if (nodes[idx].rate_limited) {
        g = store->take(b.key, keep_for(b, li == interactive_lane), now);
        if (!g.granted) {
          // Interactive goes first and may use more of the window than batch, so a blocked
          // lane blocks the bucket. No retry time: an answer (which dirties the host) unblocks.
          set_timer(b, g.retry_at, now);
          return false;
        }
      }
      pop_turn(l, idx);
      start(idx, g);
      out.admitted.push_back(id_of(idx));
      return true;
    }
    return false;
  }

  void dispatch(host_entry& h, time_point now, wakeups& out) {
    h.dirty = false;
    if (h.active.empty()) return;
    // Rotate which bucket goes first so buckets of one tenant share free slots.
    scratch.clear();
    const std::size_t n = h.active.size();
    for (std::size_t i = 0; i < n; ++i) scratch.push_back(h.active[(h.rr + i) % n]);
    ++h.rr;
    while (!scratch.empty() && h.inflight < h.limit.cap()) {
      for (std::size_t i = 0; i < scratch.size() && h.inflight < h.limit.cap();) {
        if (admit_one(*scratch[i], now, out)) {
          ++i;
        } else {
          scratch.erase(scratch.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
    }
    std::erase_if(h.active, [](bucket_entry* b) {
      if (b->queued() > 0) return false;
      b->active = false;
      return true;
    });
  }

  // Tickets a new request of this lane/caller would wait behind: retries, then round-robin
  // turns (each other caller gets at most one more turn than our own backlog).
  std::size_t ahead_of(const bucket_entry& b, bool interactive, std::uint64_t caller) const {
    auto rr_ahead = [caller](const lane& l) {
      const auto it = l.callers.find(caller);
      const std::size_t own = it != l.callers.end() ? it->second.count : 0;
      const std::size_t others = l.active_callers - (own > 0 ? 1 : 0);
      return l.retry.count + std::min(l.count - l.retry.count, own + others * (own + 1));
    };
    if (interactive) return rr_ahead(b.lanes[interactive_lane]);
    return b.lanes[interactive_lane].count + rr_ahead(b.lanes[batch_lane]);
  }

  // Predicted wait before a request `ahead` places back gets budget: windows needed from
  // what is left now and the usable capacity of each later window. `best_case` counts the
  // in-flight requests as already in the last Remaining (what their answers may show).
  duration predict(const bucket_entry& b, bool interactive, std::size_t ahead, time_point now,
                   bool best_case = false) const {
    const auto v = store->view(b.key, now);
    if (!v) return duration::zero();
    const duration hold = v->hold_until ? *v->hold_until - now : duration::zero();
    // Nothing known yet (or nothing to know): the probe's answer will tell.
    if (v->phase == bucket_phase::unknown || v->phase == bucket_phase::unmetered) return hold;
    const std::int64_t keep = bucket::kept(keep_for(b, interactive), v->capacity);
    const std::int64_t per_window = std::max<std::int64_t>(1, v->capacity - keep);
    const std::int64_t avail =
        std::max<std::int64_t>(0, (best_case ? std::max(v->available, v->at_most) : v->available) - keep);
    const auto position = static_cast<std::int64_t>(ahead) + 1;
    if (position <= avail) return hold;
    const std::int64_t windows = (position - avail + per_window - 1) / per_window;
    // In `opening` the next window starts with the next request, so it ends a window from now.
    const duration first = v->phase == bucket_phase::confirmed && v->reset_at
                               ? std::max(duration::zero(), *v->reset_at - now)
                               : v->window;
    return std::max(hold, first + (windows - 1) * v->window);
  }

  verdict reject(duration wait) const { return verdict{verdict_kind::reject, 0, retry_seconds(wait)}; }
};

scheduler::scheduler(scheduler_settings s, std::unique_ptr<bucket_store> store)
    : impl_(std::make_unique<impl>(s, std::move(store))) {}
scheduler::~scheduler() = default;
scheduler::scheduler(scheduler&&) noexcept = default;
scheduler& scheduler::operator=(scheduler&&) noexcept = default;

std::string scheduler::bucket_name(const std::string& host, const std::string& group,
                                   const std::string& bucket, bool instance, time_point now) {
  impl& m = *impl_;
  if (!instance) return bucket;
  m.sweep(now);
  const bucket_key key{host, bucket};
  if (auto it = m.buckets.find(key); it != m.buckets.end()) {
    it->second->last_used = now;
    return bucket;
  }
  std::string overflow = group + ":other";
  if (auto hit = m.hosts.find(host); hit != m.hosts.end()) {
    const auto& inst = hit->second->instances;
    if (auto g = inst.find(group); g != inst.end() && g->second >= m.settings.max_instances_per_host) {
      return overflow;
    }
  }
  auto* b = m.bucket_for(key, now);
  if (!b) return overflow;
  b->instance = true;
  b->group = group;
  ++b->host->instances[group];
  return bucket;
}

verdict scheduler::submit(const admission_request& req, time_point now) {
  impl& m = *impl_;
  auto* bp = m.bucket_for(req.key, now);
  if (!bp) return m.reject(std::chrono::seconds(1));
  auto& b = *bp;
  b.capacity_percent = req.capacity_percent;
  auto& h = *b.host;
  const bool ahead = req.interactive ? b.lanes[interactive_lane].count > 0 : b.queued() > 0;
  if (!ahead && h.inflight < h.limit.cap()) {
    grant g{true, false, 0, std::nullopt};
    if (req.rate_limited) g = m.store->take(req.key, m.keep_for(b, req.interactive), now);
    if (g.granted) {
      const std::uint32_t idx = m.alloc();
      auto& n = m.nodes[idx];
      n.caller = req.caller;
      n.interactive = req.interactive;
      n.rate_limited = req.rate_limited;
      n.deadline = req.deadline;
      n.bucket = &b;
      m.start(idx, g);
      return verdict{verdict_kind::admit, m.id_of(idx), {}};
    }
  }
  const std::size_t places = m.ahead_of(b, req.interactive, req.caller);
  const duration wait = req.rate_limited ? m.predict(b, req.interactive, places, now) : duration::zero();
  if (b.queued() >= m.settings.max_queue || m.queued_total >= m.settings.max_queue_total)
    return m.reject(wait);
  // Refused at once only if it cannot fit even when the answers still out free budget;
  // otherwise it waits for them, and at worst its deadline answers it.
  if (now + wait > req.deadline && now + m.predict(b, req.interactive, places, now, true) > req.deadline)
    return m.reject(wait);
  const std::uint32_t idx = m.alloc();
  auto& n = m.nodes[idx];
  n.caller = req.caller;
  n.interactive = req.interactive;
  n.rate_limited = req.rate_limited;
  n.deadline = req.deadline;
  n.bucket = &b;
  m.enqueue(idx, false);
  return verdict{verdict_kind::queue, m.id_of(idx), {}};
}

wakeups scheduler::poll(time_point now) {
  impl& m = *impl_;
  wakeups out;
  while (!m.timers.empty() && m.timers.begin()->first <= now) {
    auto* b = m.timers.begin()->second;
    m.timers.erase(m.timers.begin());
    b->wake.reset();
    m.mark_dirty(*b->host);
  }
  // Back-offs the other sidecars of a fleet learned, each adopted once (downward only).
  for (auto& [name, h] : m.hosts) {
    if (const auto shared = m.store->fleet_concurrency(name); shared && shared->version != h->fleet_version) {
      h->fleet_version = shared->version;
      h->limit.adopt(shared->memory, now);
      m.mark_dirty(*h);
    }
  }
  m.work.clear();
  m.work.swap(m.dirty);  // dispatch never dirties a host, so one pass is enough
  for (auto* h : m.work) m.dispatch(*h, now, out);
  // What is still queued at its deadline can no longer be admitted in time.
  while (!m.heap.empty() && m.nodes[m.heap.front()].deadline <= now) {
    const std::uint32_t idx = m.heap.front();
    auto& n = m.nodes[idx];
    auto& b = *n.bucket;
    const bool interactive = n.interactive;
    const std::uint64_t caller = n.caller;
    const ticket id = m.id_of(idx);
    m.dequeue(idx);
    m.release(idx);
    out.rejected.emplace_back(
        id, retry_seconds(m.predict(b, interactive, m.ahead_of(b, interactive, caller), now)));
  }
  m.sweep(now);
  if (!m.timers.empty()) out.next_wake = m.timers.begin()->first;
  if (!m.heap.empty()) {
    const time_point d = m.nodes[m.heap.front()].deadline;
    if (!out.next_wake || d < *out.next_wake) out.next_wake = d;
  }
  return out;
}

void scheduler::cancel(ticket id, time_point now) {
  impl& m = *impl_;
  const auto idx = m.find(id);
  if (!idx) return;
  auto& n = m.nodes[*idx];
  if (n.state == node_state::queued) {
    m.dequeue(*idx);
  } else {
    m.finish(*idx);
    if (n.rate_limited) m.store->settle(n.bucket->key, n.granted, settle_kind::lost, nullptr, now);
  }
  m.release(*idx);
}

response_decision scheduler::on_response(ticket id, int status, const observation& obs, bool per_principal,
                                         time_point now) {
  impl& m = *impl_;
  const auto found = m.find(id);
  if (!found || m.nodes[*found].state != node_state::inflight) return {response_kind::deliver, {}};
  const std::uint32_t idx = *found;
  auto& n = m.nodes[idx];
  auto& b = *n.bucket;
  auto& h = *b.host;
  const std::uint32_t inflight_before = h.inflight;
  m.finish(idx);
  constexpr int too_many_requests = 429;

  // A request outside every bucket has no window to wait for: a 429 there is passed through
  // rather than retried in a loop (the concurrency 429 still applies to it).
  const bool retry_429 = status == too_many_requests && !per_principal &&
                         (n.rate_limited || obs.kind == limit_kind::concurrency);
  if (retry_429) {
    // Okta did not process a 429 (docs/okta-behaviour.md "429 responses"), so any method may be retried.
    if (n.rate_limited) m.store->settle(b.key, n.granted, settle_kind::not_processed, &obs, now);
    duration wait = duration::zero();
    if (obs.kind == limit_kind::concurrency) {
      // Too many in flight org-wide: keep one fewer than we had, and retry as soon as one of
      // the others completes, not at the ~2 min hinted reset (what the SDKs do, and their users report as
      // two-minute stalls). What one sidecar learned, the fleet knows (a local store ignores it),
      // including the lower level a later 429 of the same overshoot showed.
      const auto knew = h.limit.memory();
      h.limit.on_limited(inflight_before, n.cap_epoch, now);
      if (h.limit.memory() != knew) m.store->share_concurrency(h.name, h.limit.memory());
    } else if (n.rate_limited) {
      wait = m.predict(b, n.interactive, 0, now);
    }
    if (now + wait > n.deadline || (obs.kind == limit_kind::concurrency && n.deadline <= now)) {
      m.release(idx);
      return {response_kind::give_up, retry_seconds(wait)};
    }
    m.enqueue(idx, true);
    return {response_kind::requeued, {}};
  }

  if (n.rate_limited) {
    // A per-principal 429 describes one user's or client's limit, not the org bucket.
    if (status == too_many_requests) {
      m.store->settle(b.key, n.granted, settle_kind::not_processed, nullptr, now);
    } else {
      m.store->settle(b.key, n.granted, settle_kind::answered, &obs, now);
    }
  }
  if (status != too_many_requests) h.limit.on_success(inflight_before, now);
  m.release(idx);
  return {response_kind::deliver, {}};
}

void scheduler::on_failure(ticket id, time_point now) {
  impl& m = *impl_;
  const auto idx = m.find(id);
  if (!idx || m.nodes[*idx].state != node_state::inflight) return;
  auto& n = m.nodes[*idx];
  m.finish(*idx);
  if (n.rate_limited) m.store->settle(n.bucket->key, n.granted, settle_kind::lost, nullptr, now);
  m.release(*idx);
}

last_seen scheduler::last(const bucket_key& key) const {
  // Header values only; no `now` needed, and a rolled window does not change what was seen.
  const auto v = impl_->store->view(key, time_point{});
  if (!v) return {};
  return last_seen{v->limit, v->remaining, v->reset_epoch};
}

std::vector<bucket_status> scheduler::buckets(time_point now) const {
  std::vector<bucket_status> out;
  out.reserve(impl_->buckets.size());
  for (const auto& [key, b] : impl_->buckets) {
    bucket_status s;
    s.key = key;
    s.queued = b->queued();
    s.inflight = b->inflight;
    s.capacity_percent = impl_->capacity_of(*b);
    if (const auto v = impl_->store->view(key, now)) {
      s.limit = v->limit;
      s.remaining = v->remaining;
      s.reset_epoch = v->reset_epoch;
      if (v->phase == bucket_phase::opening) {
        s.remaining = v->limit;  // the window restored; the next answer will say by how much
      } else if (v->reset_at) {
        s.reset_in = std::max(duration::zero(), *v->reset_at - now);
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<host_status> scheduler::hosts() const {
  std::vector<host_status> out;
  out.reserve(impl_->hosts.size());
  for (const auto& [name, h] : impl_->hosts) {
    out.push_back({name, h->inflight, h->limit.cap(), h->queued, h->limit.source(), h->limit.refused(),
                   h->limit.backoffs()});
  }
  return out;
}

void scheduler::update_settings(const scheduler_settings& s) {
  impl& m = *impl_;
  m.settings = s;
  if (m.local) m.local->update_settings(s.bucket);
  for (auto& [name, h] : m.hosts) {
    // A learned cap keeps what it learned, within the new maximum.
    h->limit.update_settings(impl::concurrency_for(s));
    m.mark_dirty(*h);
  }
}

std::vector<std::pair<std::string, concurrency_memory>> scheduler::concurrency_memories() const {
  std::vector<std::pair<std::string, concurrency_memory>> out;
  for (const auto& [name, h] : impl_->hosts) {
    if (h->limit.source() != concurrency_source::seed) out.emplace_back(name, h->limit.memory());
  }
  return out;
}

void scheduler::adopt_concurrency(const std::string& host, const concurrency_memory& m, time_point now) {
  impl& im = *impl_;
  auto it = im.hosts.find(host);
  if (it == im.hosts.end()) {
    auto h = std::make_unique<impl::host_entry>();
    h->name = host;
    h->limit = concurrency_limit(impl::concurrency_for(im.settings));
    it = im.hosts.emplace(host, std::move(h)).first;
  }
  it->second->limit.adopt(m, now);
  im.mark_dirty(*it->second);
}

std::size_t scheduler::queued_total() const { return impl_->queued_total; }
std::size_t scheduler::bucket_count() const { return impl_->buckets.size(); }
std::size_t scheduler::host_count() const { return impl_->hosts.size(); }

std::vector<ticket> scheduler::drain_all() {
  impl& m = *impl_;
  std::vector<ticket> out;
  out.reserve(m.heap.size());
  while (!m.heap.empty()) {
    const std::uint32_t idx = m.heap.back();
    out.push_back(m.id_of(idx));
    m.dequeue(idx);
    m.release(idx);
  }
  for (auto& [key, b] : m.buckets) {
    for (auto& l : b->lanes) {
      l.callers.clear();
      l.ring.clear();
    }
    m.set_timer(*b, std::nullopt, time_point{});
  }
  for (auto& [name, h] : m.hosts) {
    for (auto* b : h->active) b->active = false;
    h->active.clear();
  }
  return out;
}

}  // namespace okta_sidecar::ratelimit
