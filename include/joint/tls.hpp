// joint/tls.hpp — TlsConfig: certificates, trusted CAs and client authentication for
// Context::listen_tls and Context::connect_tls. Part of joint.hpp.
#ifndef JOINT_TLS_HPP
#define JOINT_TLS_HPP

#include <joint/base.hpp>

#include <cstdint>
#include <memory>
#include <string_view>

namespace joint {

/// Whether a TLS listener asks clients for certificates (verified against its CA set).
enum class ClientAuth : std::int32_t {
    None = JOINT_TLS_CLIENT_AUTH_NONE,
    Optional = JOINT_TLS_CLIENT_AUTH_OPTIONAL,
    Required = JOINT_TLS_CLIENT_AUTH_REQUIRED,
};

/// TLS settings (joint_tls_config). listen_tls and connect_tls copy them, so they may be
/// changed or destroyed afterwards. A setter that fails leaves the settings as they were
/// and returns an Error saying why (e.g. "server-key.pem is not the key of the certificate
/// in server.pem").
class TlsConfig {
public:
    TlsConfig() = default;
    /// Takes ownership of `tls` (freed with joint_tls_config_free).
    explicit TlsConfig(joint_tls_config *tls) noexcept : c_(tls) {}

    /// New, empty settings (a client with them trusts the system's roots).
    static Result<TlsConfig> create() {
        joint_tls_config *c = nullptr;
        Status st = joint_tls_config_new(&c);
        if (st < 0)
            return detail::make_error(st);
        return TlsConfig(c);
    }

    /// The certificate chain (leaf first) and its private key, from PEM files. A listener
    /// needs one; a client presents it when the server asks (mutual TLS).
    Result<void> set_certificate_files(detail::CStr chain_path, detail::CStr key_path) {
        if (chain_path.bad() || key_path.bad())
            return detail::embedded_nul();
        return done(joint_tls_config_set_certificate_files(c_.get(), chain_path.c_str(), key_path.c_str()));
    }
    /// set_certificate_files from PEM text in memory (copied).
    Result<void> set_certificate_pem(std::string_view chain, std::string_view key) {
        return done(joint_tls_config_set_certificate_pem(c_.get(), bytes(chain), chain.size(), bytes(key), key.size()));
    }
    /// Trust the CA certificates in this PEM file instead of the system's roots (client), or
    /// verify client certificates against them (listener).
    Result<void> set_ca_file(detail::CStr path) {
        if (path.bad())
            return detail::embedded_nul();
        return done(joint_tls_config_set_ca_file(c_.get(), path.c_str()));
    }
    /// set_ca_file from PEM text in memory (copied).
    Result<void> set_ca_pem(std::string_view pem) { return done(joint_tls_config_set_ca_pem(c_.get(), bytes(pem), pem.size())); }
    /// Listener side: ask for client certificates (Optional and Required need a CA set).
    Result<void> set_client_auth(ClientAuth mode) { return done(joint_tls_config_set_client_auth(c_.get(), static_cast<std::int32_t>(mode))); }
    /// Client side: the name the server's certificate must carry, instead of the URI's host.
    Result<void> set_server_name(detail::CStr name) {
        if (name.bad())
            return detail::embedded_nul();
        return done(joint_tls_config_set_server_name(c_.get(), name.c_str()));
    }

    /// The C settings (still owned by this object); NULL if empty.
    const joint_tls_config *raw() const noexcept { return c_.get(); }
    /// Not empty.
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    struct Free {
        void operator()(joint_tls_config *c) const noexcept { joint_tls_config_free(c); }
    };
    static const std::uint8_t *bytes(std::string_view s) noexcept { return reinterpret_cast<const std::uint8_t *>(s.data()); }
    Result<void> done(Status st) const {
        if (st < 0)
            return Error(st, c_ ? joint_tls_config_error(c_.get()) : joint_status_str(st));
        return {};
    }

    std::unique_ptr<joint_tls_config, Free> c_;
};

} // namespace joint

#endif
