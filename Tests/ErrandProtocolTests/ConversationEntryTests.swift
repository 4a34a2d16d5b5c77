import ErrandProtocol
import Foundation
import Testing

@Suite("History entries")
struct ConversationEntryTests {
    func entry(text: String? = nil, arguments: [String]? = nil, output: String) -> ConversationEntry {
        ConversationEntry(position: 7, task: "5b0e7c1e-0000-4000-8000-000000000001", device: "phone",
                          request: TaskRequest(task: "5b0e7c1e-0000-4000-8000-000000000001", executor: arguments == nil ? .agent : .action,
                                               text: text, action: arguments == nil ? nil : "args", arguments: arguments),
                          status: .succeeded, exitCode: 0, output: output, truncated: false, createdAt: 100, finishedAt: 101)
    }

    func encodedSize(_ entry: ConversationEntry) throws -> Int { try JSONEncoder().encode(entry).count }

    @Test("An entry that fits is left whole")
    func small() {
        let whole = entry(text: "tidy my notes", output: "done\n")
        #expect(whole.fitting(encodedBytes: 40_000) == whole)
    }

    @Test("An entry too large for a page is cut to fit: output first, then text and arguments; who, what and when stay whole")
    func cut() throws {
        // Control characters encode as six bytes each: the worst case for the page budget.
        let control = String(repeating: "\u{1}", count: 9_000)
        for whole in [entry(arguments: [control, "x", control], output: String(repeating: "\u{2}", count: 4_096)),
                      entry(text: control, output: String(repeating: "\u{2}", count: 4_096))] {
            #expect(try encodedSize(whole) > 63_487)
            let cut = whole.fitting(encodedBytes: 40_000)
            #expect(try encodedSize(cut) <= 40_000)
            #expect(cut.truncated)
            #expect(cut.position == whole.position && cut.task == whole.task && cut.device == whole.device)
            #expect(cut.status == whole.status && cut.createdAt == whole.createdAt && cut.finishedAt == whole.finishedAt)
            #expect(cut.request.task == whole.request.task && cut.request.executor == whole.request.executor && cut.request.action == whole.request.action)
            let texts = (cut.request.text.map { [$0] } ?? []) + (cut.request.arguments ?? [])
            #expect(texts.contains { $0.hasSuffix(ConversationEntry.cutMarker) })
        }
        // Output alone is cut when that is enough, and the request is left whole.
        let outputOnly = entry(text: "short", output: String(repeating: "\u{3}", count: 4_096))
        let cut = outputOnly.fitting(encodedBytes: 10_000)
        #expect(try encodedSize(cut) <= 10_000)
        #expect(cut.request == outputOnly.request && cut.truncated)
    }
}
