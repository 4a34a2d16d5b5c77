import ArgumentParser
import ErrandHost
import ErrandPeer
import Foundation
import MCP

extension HostCommand {
    /// The permission tool Claude Code calls before it uses a tool: a stdio MCP server (started
    /// by Claude Code from `--mcp-config`) with one tool, `approve`, that asks the running host,
    /// which asks the paired devices.
    struct ApprovalTool: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approval-tool",
            abstract: "The MCP server Claude Code asks for permission (started by the host's claude-code adapter; not for people).",
            shouldDisplay: false)

        @OptionGroup var peer: PeerOptions
        @Option(help: ArgumentHelp("The task whose agent asks.", valueName: "id")) var task: String

        static let toolName = "approve"

        func run() async throws {
            let server = Server(name: "errand", version: ErrandVersion.current, capabilities: .init(tools: .init(listChanged: false)))
            await server.withMethodHandler(ListTools.self) { _ in
                .init(tools: [Tool(
                    name: Self.toolName,
                    description: "Asks the person, on their paired devices, whether the agent may use a tool with this input.",
                    inputSchema: .object([
                        "type": .string("object"),
                        "properties": .object([
                            "tool_name": .object(["type": .string("string"), "description": .string("The tool the agent wants to use")]),
                            "input": .object(["type": .string("object"), "description": .string("The tool's input")]),
                            "tool_use_id": .object(["type": .string("string")]),
                        ]),
                        "required": .array([.string("tool_name"), .string("input")]),
                    ]))])
            }
            let directory = peer.directory
            let task = self.task
            await server.withMethodHandler(CallTool.self) { params in
                guard params.name == Self.toolName else {
                    return .init(content: [.text(text: "unknown tool \(params.name)", annotations: nil, _meta: nil)], isError: true)
                }
                let tool = params.arguments?["tool_name"]?.stringValue ?? ""
                let input = (try? JSONEncoder().encode(params.arguments?["input"] ?? .object([:]))) ?? Data("{}".utf8)
                let answer = await HostApprovalClient.ask(directory: directory, task: task, tool: tool, input: input)
                return .init(content: [.text(text: answer, annotations: nil, _meta: nil)], isError: false)
            }
            try await server.start(transport: StdioTransport())
            await server.waitUntilCompleted()
        }
    }
}
