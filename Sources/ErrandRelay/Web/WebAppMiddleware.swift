import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Serves the web companion at `/app/` (and `/app` → `/app/`, `/` → `/app/`) from files held in
/// memory, with the headers that keep a page that holds keys to itself: a strict
/// Content-Security-Policy (only the relay's own scripts, styles, images and connections; no
/// inline script; no framing), no sniffing, no referrer, its own browsing context group.
/// Answers are revalidated on every load (`no-cache` with an `ETag`), so an update of the relay's
/// files reaches every phone on its next open, and the service worker's offline copy stays fresh.
struct WebAppMiddleware<Context: RequestContext>: RouterMiddleware {
    let files: WebAppFiles

    /// The page's policy. `'wasm-unsafe-eval'` lets the page compile its own WebAssembly
    /// (libsodium), which `script-src 'self'` alone forbids; it allows no JavaScript eval.
    static var contentSecurityPolicy: String {
        [
            "default-src 'none'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self'",
            "img-src 'self'",
            "manifest-src 'self'",
            "connect-src 'self'",
            "worker-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ].joined(separator: "; ")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/" || path == "/app" {
            guard request.method == .get || request.method == .head else { return try await next(request, context) }
            return Response(status: .permanentRedirect, headers: [.location: "/app/", .cacheControl: "no-cache"])
        }
        guard path.hasPrefix("/app/"), request.method == .get || request.method == .head else {
            return try await next(request, context)
        }
        var relative = String(path.dropFirst("/app/".count))
        if relative.isEmpty { relative = "index.html" }
        guard let file = files.files[relative] else {
            throw RelayError(.notFound, "the web companion has no file \(path)")
        }
        var headers = Self.securityHeaders
        headers[.contentType] = file.contentType
        headers[.eTag] = file.entityTag
        headers[.cacheControl] = "no-cache"
        if let condition = request.headers[.ifNoneMatch],
           condition.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == file.entityTag || $0.trimmingCharacters(in: .whitespaces) == "*" }) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentLength] = String(file.body.readableBytes)
        if request.method == .head { return Response(status: .ok, headers: headers) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: file.body))
    }

    /// Sent with every file of the companion.
    static var securityHeaders: HTTPFields {
        var headers = HTTPFields()
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[.xContentTypeOptions] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        headers[HTTPField.Name("Cross-Origin-Opener-Policy")!] = "same-origin"
        headers[.crossOriginResourcePolicy] = "same-origin"
        headers[HTTPField.Name("Permissions-Policy")!] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
        return headers
    }
}

/// Cross-origin access to the relay's API for a web companion served from elsewhere, for the
/// origins the operator lists (`web.allowed_origins`) and no other: their requests get
/// `Access-Control-Allow-Origin` naming them, their preflights are answered, and a preflight from
/// any other origin is refused. Never credentials (the API takes none: it authenticates by
/// signature and bearer token). Outermost, so refusals carry the headers too and the page can
/// read the relay's error message.
struct AllowedOriginsMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedOrigins: Set<String>

    static var allowedMethods: String { "GET, POST, PUT, DELETE" }
    static var allowedHeaders: String {
        "Authorization, Content-Type, Errand-Key, Errand-Timestamp, Errand-Nonce, Errand-Signature, Errand-Claim"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else {
            // Answers differ by Origin: say so to caches even when this request has none.
            var response = try await next(request, context)
            response.headers[.vary] = "Origin"
            return response
        }
        let allowed = allowedOrigins.contains(origin)
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            guard allowed else {
                throw RelayError(.forbidden, "cross-origin requests from \(origin) are not allowed by this relay (web.allowed_origins)")
            }
            var headers = HTTPFields()
            headers[.accessControlAllowOrigin] = origin
            headers[.accessControlAllowMethods] = Self.allowedMethods
            headers[.accessControlAllowHeaders] = Self.allowedHeaders
            headers[.accessControlMaxAge] = "600"
            headers[.vary] = "Origin"
            return Response(status: .noContent, headers: headers)
        }
        guard allowed else {
            var response = try await next(request, context)
            response.headers[.vary] = "Origin"
            return response
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = "Retry-After"
        response.headers[.vary] = "Origin"
        return response
    }
}
