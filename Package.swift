// swift-tools-version:6.1
// Errand: message your own computer from another device; an end-to-end encrypted host agent,
// companion client and zero-knowledge relay. See README.md for the map of modules.

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "errand",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "errand", targets: ["errand"]),
        .executable(name: "errand-relay", targets: ["errand-relay"]),
        .executable(name: "errand-bench", targets: ["errand-bench"]),
        .library(name: "ErrandCrypto", targets: ["ErrandCrypto"]),
        .library(name: "ErrandProtocol", targets: ["ErrandProtocol"]),
        .library(name: "ErrandQR", targets: ["ErrandQR"]),
        .library(name: "ErrandTransparency", targets: ["ErrandTransparency"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", from: "0.12.1"),
    ],
    targets: [
        // MARK: System libraries (Debian packages / Homebrew formulae)
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]
        ),
        .systemLibrary(
            name: "CQREncode",
            pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"]), .brew(["qrencode"])]
        ),
        .systemLibrary(
            name: "CZBar",
            pkgConfig: "zbar",
            providers: [.apt(["libzbar-dev"]), .brew(["zbar"])]
        ),
        .systemLibrary(
            name: "CLibPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"]), .brew(["libpng"])]
        ),
        .systemLibrary(
            name: "CLibJPEG",
            pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg-dev"]), .brew(["jpeg-turbo"])]
        ),
        // A small C shim: PNG/JPEG files <-> 8-bit grayscale pixels. libjpeg reports errors with
        // longjmp, which Swift cannot catch, so that part has to be C.
        .target(
            name: "CImageCodec",
            dependencies: ["CLibPNG", "CLibJPEG"]
        ),
        // Process control Swift cannot call directly (prctl is variadic): the host's subreaper.
        .target(name: "CProcessControl"),

        // MARK: Pure libraries (no I/O except where named)
        // Typed wrapper over libsodium: keys that zero themselves, throwing APIs, constant-time compares.
        .target(
            name: "ErrandCrypto",
            dependencies: ["CSodium"],
            swiftSettings: swiftSettings
        ),
        // Wire formats shared by relay and peers: envelopes, pairing offers, SAS. No I/O.
        .target(
            name: "ErrandProtocol",
            dependencies: ["ErrandCrypto"],
            swiftSettings: swiftSettings
        ),
        // QR codes: render (terminal, PNG, SVG) with libqrencode; scan images with zbar.
        .target(
            name: "ErrandQR",
            dependencies: ["CQREncode", "CZBar", "CImageCodec"],
            swiftSettings: swiftSettings
        ),

        // The relay server: Hummingbird app, routes, store protocol with SQLite (GRDB) and PostgreSQL
        // (postgres-nio, several nodes on one database), limits, live delivery.
        .target(
            name: "ErrandRelay",
            dependencies: [
                "ErrandTransparency",
                "ErrandProtocol", "ErrandCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),

        // The relay client both peers use: HTTP + WebSocket, request signing, retries with jittered backoff.
        .target(
            name: "ErrandRelayClient",
            dependencies: [
                "ErrandProtocol", "ErrandCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
            ],
            swiftSettings: swiftSettings
        ),

        // The transparency log's pure parts: RFC 9162 Merkle hashing and proofs, C2SP signed notes and checkpoints.
        .target(name: "ErrandTransparency", dependencies: ["ErrandCrypto"], swiftSettings: swiftSettings),

        // What host and companion share: the state folder, SQLite state files, relay errors in words.
        .target(
            name: "ErrandPeer",
            dependencies: [
                "ErrandCrypto", "ErrandProtocol", "ErrandRelayClient", "ErrandTransparency",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The host: identity, device registry, pairing, inbox, revocation, configuration, task runner, agent loop.
        .target(
            name: "ErrandHost",
            dependencies: [
                "ErrandCrypto", "ErrandProtocol", "ErrandRelayClient", "ErrandPeer", "ErrandTransparency", "CProcessControl",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),
        // The companion: pairing, paired hosts, sessions, outbox.
        .target(
            name: "ErrandCompanion",
            dependencies: [
                "ErrandCrypto", "ErrandProtocol", "ErrandRelayClient", "ErrandPeer",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executables (argument parsing and wiring only)
        .executableTarget(
            name: "errand",
            dependencies: [
                "ErrandCrypto", "ErrandProtocol", "ErrandQR", "ErrandPeer", "ErrandHost", "ErrandCompanion", "ErrandRelayClient", "ErrandTransparency",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // The permission tool Claude Code starts is a stdio MCP server.
                .product(name: "MCP", package: "swift-sdk"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "errand-relay",
            dependencies: [
                "ErrandRelay",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "errand-bench",
            dependencies: [
                "ErrandCrypto", "CSodium", "ErrandProtocol", "ErrandRelay", "ErrandRelayClient", "ErrandQR", "ErrandPeer", "ErrandHost", "ErrandCompanion", "ErrandTransparency",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests (one per module)
        // Helpers shared by the test targets: running programs, scratch folders.
        .target(name: "ErrandTestSupport", path: "Tests/ErrandTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "ErrandCryptoTests", dependencies: ["ErrandCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ErrandProtocolTests", dependencies: ["ErrandProtocol", "ErrandCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ErrandTransparencyTests", dependencies: ["ErrandTransparency", "ErrandCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ErrandQRTests", dependencies: ["ErrandQR", "ErrandProtocol", "ErrandTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ErrandRelayTests",
            dependencies: [
                "ErrandRelay", "ErrandRelayClient", "ErrandProtocol", "ErrandCrypto", "ErrandTestSupport", "errand-relay",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Runs the built executables as a person would (depends on them so they are built first).
        .testTarget(name: "ErrandCLITests", dependencies: ["errand", "errand-relay", "ErrandTestSupport"], swiftSettings: swiftSettings),
        // Host and companion libraries against a real relay process.
        .testTarget(
            name: "ErrandPeerTests",
            dependencies: ["ErrandHost", "ErrandCompanion", "ErrandPeer", "ErrandRelayClient", "ErrandProtocol", "ErrandCrypto",
                           "ErrandTestSupport", "errand-relay", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
    ]
)
