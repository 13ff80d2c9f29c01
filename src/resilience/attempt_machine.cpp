#include "okta_sidecar/resilience/attempt_machine.hpp"

#include <utility>

#include "okta_sidecar/resilience/circuit_breaker.hpp"

namespace okta_sidecar::resilience {

attempt_machine::attempt_machine(const retry_settings& settings, std::string method, bool replayable,
                                 time_point deadline)
    : settings_(settings), method_(std::move(method)), replayable_(replayable), deadline_(deadline) {}

attempt_action attempt_machine::start() {
  if (state_ != attempt_state::ready) return finish(give_up_reason::upstream_unreachable);
  state_ = attempt_state::admitting;
  ++attempts_;
  return {next_step::admit};
}

attempt_action attempt_machine::on_admitted() {
  if (state_ != attempt_state::admitting && state_ != attempt_state::requeued) {
    return finish(give_up_reason::upstream_unreachable);
  }
  // A requeued 429 goes again: another attempt (the first was counted by start()).
  if (state_ == attempt_state::requeued) ++attempts_;
  state_ = attempt_state::in_flight;
  return {next_step::send};
}

attempt_action attempt_machine::on_admission_refused(duration retry_after) {
  return finish(give_up_reason::rate_limited, retry_after);
}

attempt_action attempt_machine::on_client_gone() { return finish(give_up_reason::client_gone); }

attempt_action attempt_machine::on_failure(failure_kind kind, time_point now, double random01,
                                           const retry_allowance& budget) {
  // A hung endpoint is answered 504, anything else that left no response 502.
  const auto why = kind == failure_kind::response_timeout ? give_up_reason::upstream_timeout
                                                          : give_up_reason::upstream_unreachable;
  if (state_ != attempt_state::in_flight) return finish(why);
  ++failures_;
  return retry_or(kind, now, random01, budget, {next_step::give_up, {}, why});
}

bool attempt_machine::must_read_whole(int status, limiter_verdict verdict) const {
  if (!replayable_) return false;
  if (status == 429) return verdict != limiter_verdict::deliver;
  return classify_status(status) == outcome::failure;
}

attempt_action attempt_machine::on_response(int status, limiter_verdict verdict, duration limiter_retry_after,
                                            bool body_read, time_point now, double random01,
                                            const retry_allowance& budget) {
  if (state_ != attempt_state::in_flight) return finish(give_up_reason::upstream_unreachable);
  // Okta did not process a 429 (docs/okta-behaviour.md): any method may go again, from the
  // front of the queue, whatever became of its body; the limiter decides when.
  if (status == 429 && replayable_ && verdict != limiter_verdict::deliver) {
    ++requeues_;
    if (verdict == limiter_verdict::give_up) return finish(give_up_reason::rate_limited, limiter_retry_after);
    state_ = attempt_state::requeued;
    return {next_step::requeue};
  }
  const bool read_whole = must_read_whole(status, verdict);
  if (read_whole && body_read) {
    ++failures_;
    return retry_or(failure_kind::upstream_5xx, now, random01, budget, {next_step::deliver});
  }
  if (read_whole) return finish(give_up_reason::upstream_unreachable);
  return deliver();
}

attempt_action attempt_machine::on_backoff_elapsed() {
  if (state_ != attempt_state::backing_off) return finish(give_up_reason::upstream_unreachable);
  state_ = attempt_state::admitting;
  ++attempts_;
  return {next_step::admit};
}

attempt_action attempt_machine::retry_or(failure_kind kind, time_point now, double random01,
                                         const retry_allowance& budget, attempt_action otherwise) {
  const auto d = decide_retry(settings_, method_, kind, failures_, now, deadline_, random01);
  last_reason_ = d.reason;
  // The budget is asked last: asking spends it.
  if (!replayable_ || !d.retry || !budget(now)) {
    state_ = attempt_state::done;
    return otherwise;
  }
  ++retries_;
  state_ = attempt_state::backing_off;
  return {next_step::backoff, d.delay};
}

attempt_action attempt_machine::finish(give_up_reason why, duration retry_after) {
  state_ = attempt_state::done;
  return {next_step::give_up, retry_after, why};
}

attempt_action attempt_machine::deliver() {
  state_ = attempt_state::done;
  return {next_step::deliver};
}

const char* to_string(attempt_state s) {
  switch (s) {
    case attempt_state::ready:
      return "ready";
    case attempt_state::admitting:
      return "admitting";
    case attempt_state::in_flight:
      return "in_flight";
    case attempt_state::backing_off:
      return "backing_off";
    case attempt_state::requeued:
      return "requeued";
    case attempt_state::done:
      return "done";
  }
  return "unknown";
}

}  // namespace okta_sidecar::resilience
