#pragma once
// One request after its head was read and validated: the stages (identify, budget savers,
// body, breaker, admission, attempts) until it is answered.
// Its stages use relay and request_scope (the layers are listed in session.cpp).
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "context.hpp"
#include "okta_sidecar/http/request_fields.hpp"
#include "okta_sidecar/http/request_validator.hpp"

namespace okta_sidecar::proxy::detail {

// The whole life of one request after its head was read and validated: identify, budget
// savers, body, then attempts (breaker, admission, upstream) until one is answered.
asio::awaitable<bool> forward(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                              bhttp::request_parser<bhttp::empty_body>& hp,
                              const http::request_fields& fields, const destination& dest,
                              const http::validation& valid, request_record& rec);

}  // namespace okta_sidecar::proxy::detail
