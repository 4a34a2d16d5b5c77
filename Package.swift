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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
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

        // MARK: Executables (argument parsing and wiring only)
        .executableTarget(
            name: "errand",
            dependencies: [
                "ErrandProtocol", "ErrandQR",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "errand-relay",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "errand-bench",
            dependencies: [
                "ErrandCrypto", "CSodium",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests (one per module)
        .testTarget(name: "ErrandCryptoTests", dependencies: ["ErrandCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ErrandProtocolTests", dependencies: ["ErrandProtocol", "ErrandCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ErrandQRTests", dependencies: ["ErrandQR", "ErrandProtocol"], swiftSettings: swiftSettings),
        // Runs the built executables as a person would (depends on them so they are built first).
        .testTarget(name: "ErrandCLITests", dependencies: ["errand", "errand-relay"], swiftSettings: swiftSettings),
    ]
)
