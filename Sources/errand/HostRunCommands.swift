import ArgumentParser
import Dispatch
import ErrandHost
import ErrandPeer
import ErrandProtocol
import Foundation

extension HostCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the host agent in the foreground: take tasks from paired devices and run them.",
            discussion: "Executors and limits come from H/config.toml, actions from H/actions/. Stops on SIGTERM or SIGINT; tasks still running are reported as interrupted at the next start.")

        @OptionGroup var peer: PeerOptions

        /// This executable's absolute path (nil when it cannot be told).
        static var thisProgram: String? {
            #if os(Linux)
            if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
            #endif
            return Bundle.main.executableURL?.path
        }

        func run() async throws {
            let (host, configuration) = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                return (host, try HostConfiguration.load(from: host.directory))
            }
            let relay = peer.relay ?? host.settings.relayURL
            // Claude Code starts this same program as its permission tool.
            let approvalTool = Self.thisProgram.map { [$0, "host", "approval-tool", "--home", host.directory.path] }
            let agent = HostAgent(host: host, configuration: configuration, client: relayClient(relay, for: host), approvalTool: approvalTool) { line in
                // Lines carry device names and task text: never let them act on the terminal or forge a line.
                Console.line("errand host: \(TerminalText.neutralized(line))")
            }
            Console.line("errand host: “\(host.settings.name)” running; relay \(relay); \(configuration.concurrency) task(s) at a time")
            let work = Task { try await agent.run() }
            let signals = [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number)
                source.setEventHandler { work.cancel() }
                source.resume()
                return source
            }
            defer { signals.forEach { $0.cancel() } }
            do {
                try await work.value
            } catch is CancellationError {
            } catch let error as PeerError {
                throw UserFacingError(error)
            } catch {
                if !work.isCancelled {
                    throw UserFacingError("the host agent stopped: \(error)", hint: "check the relay and run 'errand host run' again")
                }
            }
            Console.line("errand host: stopped")
        }
    }

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the local execution audit: every task run on this host (kept only here).")

        @OptionGroup var peer: PeerOptions
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Show the agents' approval requests and how each was answered, instead of the tasks.") var approvals = false

        func run() async throws {
            if approvals { return try await showApprovals() }
            let entries = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                do { return try host.store.executionLog() } catch { throw PeerError("cannot read the execution log: \(error)") }
            }
            if json {
                let objects = entries.map { entry -> [String: Any] in
                    ["at": entry.at, "device": entry.device, "task": entry.task, "executor": entry.executor, "what": entry.what,
                     "status": entry.status, "exitCode": entry.exitCode.map { Int($0) as Any } ?? NSNull(),
                     "outputBytes": entry.outputBytes, "outputSHA256": entry.outputDigest]
                }
                try Console.json(objects)
                return
            }
            guard !entries.isEmpty else { Console.line("No tasks have run on this host yet."); return }
            Console.line(Table.render(header: ["TIME", "DEVICE", "STATUS", "EXIT", "OUTPUT", "SHA-256", "WHAT"], rows: entries.map { entry in
                [HostCommand.Devices.time(entry.at), entry.device, entry.status, entry.exitCode.map(String.init) ?? "-",
                 "\(entry.outputBytes) B", String(entry.outputDigest.prefix(12)), String(entry.what.prefix(60))]
            }))
        }

        private func showApprovals() async throws {
            let records = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                do { return try host.store.approvals() } catch { throw PeerError("cannot read the approval requests: \(error)") }
            }
            if json {
                try Console.json(records.map { record -> [String: Any] in
                    ["id": record.id, "task": record.task, "tool": record.tool, "status": record.status, "at": record.createdAt,
                     "answeredBy": record.answeredBy ?? NSNull(), "reason": record.reason ?? NSNull(), "answeredAt": record.answeredAt ?? NSNull()]
                })
                return
            }
            guard !records.isEmpty else { Console.line("No agent has asked for approval on this host yet."); return }
            Console.line(Table.render(header: ["TIME", "ID", "TASK", "TOOL", "STATUS", "BY", "REASON"], rows: records.map { record in
                [HostCommand.Devices.time(record.createdAt), String(record.id.prefix(8)), String(record.task.prefix(8)),
                 TerminalText.neutralized(record.tool), record.status, TerminalText.neutralized(record.answeredBy ?? "-"),
                 TerminalText.neutralized(String((record.reason ?? "").prefix(60)))]
            }))
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or change what a device may run, and whether it may answer the agent's approval requests.",
            discussion: "Executors: agent, action, shell ('shell' runs any command line: grant it only to devices you fully trust). Actions: '*' for all, or a comma-separated list of names. Approvals: yes or no (new devices: yes when they may use the agent or the shell).")

        @OptionGroup var peer: PeerOptions
        @Argument(help: ArgumentHelp("The device's name or the start of its fingerprint.", valueName: "device"))
        var device: String
        @Option(help: ArgumentHelp("Executors the device may use, comma-separated.", valueName: "list"))
        var executors: String?
        @Option(help: ArgumentHelp("Actions the device may run: '*' or a comma-separated list.", valueName: "list"))
        var actions: String?
        @Option(help: ArgumentHelp("Whether the device may allow or deny what the agent asks to do: yes or no.", valueName: "yes|no"))
        var approve: String?

        func validate() throws {
            if let approve, !["yes", "no"].contains(approve) { throw ValidationError("--approve takes yes or no") }
        }

        func run() async throws {
            let (name, policy) = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                do {
                    let target = try host.store.device(matching: device)
                    var policy = try host.store.policy(of: target.id)
                    if let executors {
                        let parsed = executors.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                        let known = parsed.compactMap(Executor.init(rawValue:))
                        guard known.count == parsed.count else {
                            throw PeerError("unknown executor in '\(executors)'", hint: "use agent, action and shell")
                        }
                        policy.executors = Set(known)
                    }
                    if let actions {
                        policy.actions = actions == "*" ? nil : Set(actions.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                    }
                    if let approve { policy.mayApprove = approve == "yes" }
                    if executors != nil || actions != nil || approve != nil { try host.store.setPolicy(policy, of: target.id) }
                    return (target.name, policy)
                } catch let error as PeerError { throw error } catch { throw PeerError("cannot change the policy: \(error)") }
            }
            let executorList = Executor.allCases.filter { policy.executors.contains($0) }.map(\.rawValue).joined(separator: ", ")
            Console.line("\(name): executors \(executorList.isEmpty ? "none" : executorList); actions \(policy.actions.map { $0.sorted().joined(separator: ", ") } ?? "all"); approvals \(policy.mayApprove ? "yes" : "no")")
        }
    }
}
