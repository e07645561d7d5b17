using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Elect.Text;

/// <summary>
/// LLaMA's SentencePiece BPE tokenizer read from a transformers folder (<c>tokenizer.model</c>,
/// <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>, <c>added_tokens.json</c>), exactly as transformers 5.12's
/// <c>LlamaTokenizer.from_pretrained(folder)</c> builds it: the class LLaVA-7B-v1's tokenizer_config.json declares.
/// </summary>
/// <remarks>
/// Why the declared class and not 5.12's <c>AutoTokenizer</c>: 5.12 lists <c>model_type</c> "llava" among the models
/// whose hub tokenizer class it does not trust and builds a bare <c>TokenizersBackend</c> from the proto for such a
/// folder, which does not prepend '▁' to the text (<c>"&lt;s&gt;A chat"</c>). MGIE was trained, and ELECT ran, with
/// transformers 4.28 / 4.41, whose AutoTokenizer honoured <c>tokenizer_class</c> "LlamaTokenizer" and gave
/// <c>"&lt;s&gt; A chat"</c> (<c>▁A</c>) - which 5.12's LlamaTokenizer class reproduces. The pipeline:
/// <list type="bullet">
/// <item>no normaliser (the proto's identity normalisation has no precompiled charsmap); added tokens are matched on
/// the raw text;</item>
/// <item>pre-tokeniser <c>Metaspace(replacement "▁", prepend_scheme first, split false)</c>: every ' ' becomes '▁', and
/// the text segment at offset 0 (not one after an added token) gets a '▁' in front unless it starts with one; each
/// segment between added tokens is one BPE word;</item>
/// <item>BPE (fuse_unk, byte_fallback from the proto) over the vocabulary piece -> id, with the merges transformers'
/// <c>generate_merges(vocab)</c> derives: every split <c>(l, r)</c> of a piece into two pieces, ordered by the merged piece's
/// id, then the lengths of <c>l</c> and <c>r</c> (ties by the ids of <c>l</c>, <c>r</c>); digits are not split (no
/// digit pre-tokeniser), the merges simply never join them where the proto has no such piece;</item>
/// <item>added tokens: the proto's control / user-defined pieces (<c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>: not normalised), the
/// special tokens of tokenizer_config.json / special_tokens_map.json (with their flags), added_tokens.json (normalised,
/// special only when a special token), matched by <see cref="AddedVocabulary"/>;</item>
/// <item>post-processor: <c>&lt;s&gt;</c> first when <c>add_bos_token</c> (default true), <c>&lt;/s&gt;</c> last when <c>add_eos_token</c>;</item>
/// <item>decoder: <c>Replace("▁", " ")</c>, <c>ByteFallback</c>, <c>Fuse</c> over every token, added tokens included,
/// then <c>Strip</c> of one leading space of the whole text.</item>
/// </list>
/// Refused: a folder with a tokenizer.json (5.12 would use that file as is; not ported), a declared tokenizer class
/// other than LlamaTokenizer(Fast), and <c>legacy: true</c> / <c>add_prefix_space: false</c> (5.12's prepend schemes
/// "always" / "never", not ported).
/// </remarks>
public sealed class LlamaTokenizer
{
    public const char SpaceSymbol = '\u2581';

    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _pieces;
    private readonly Dictionary<(int, int), (int Rank, int Id)> _merges;
    private readonly int[] _byteIds;   // id of <0xXX> or -1
    private readonly int _unkId;
    private readonly bool _byteFallback;
    private readonly List<AddedToken> _added;
    private AddedVocabulary _addedVocabulary;
    private readonly Dictionary<long, string> _addedById = new();

    /// <summary>Id of <c>&lt;s&gt;</c>.</summary>
    public long BosId { get; }
    /// <summary>Id of <c>&lt;/s&gt;</c>.</summary>
    public long EosId { get; }
    public long UnkId => _unkId;
    public bool AddBos { get; }
    public bool AddEos { get; }
    /// <summary>The SentencePiece pieces.</summary>
    public int ModelVocabSize => _pieces.Length;
    /// <summary><c>len(tokenizer)</c>: pieces plus added tokens with new ids.</summary>
    public int Count { get; private set; }
    public IReadOnlyList<AddedToken> AddedTokens => _added;

    private LlamaTokenizer(SentencePieceModel proto, List<AddedToken> added, long bos, long eos, bool addBos, bool addEos)
    {
        _pieces = proto.Pieces.Select(p => p.Text).ToArray();
        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < _pieces.Length; i++) _vocab[_pieces[i]] = i;   // a later duplicate wins, as a Python dict
        _merges = GenerateMerges(_pieces, _vocab);
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++) _byteIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        _byteFallback = proto.ByteFallback;
        var unkPiece = proto.UnkId >= 0 && proto.UnkId < _pieces.Length ? _pieces[proto.UnkId] : "<unk>";
        _unkId = _vocab.TryGetValue(unkPiece, out var u) ? u : -1;
        _added = added;
        BosId = bos;
        EosId = eos;
        AddBos = addBos;
        AddEos = addEos;
        Count = _pieces.Length;
        foreach (var t in added) Count = (int)Math.Max(Count, t.Id + 1);
        _addedVocabulary = Rebuild();
    }

    private AddedVocabulary Rebuild()
    {
        _addedById.Clear();
        foreach (var t in _added) _addedById[t.Id] = t.Content;
        return new AddedVocabulary(_added, normalize: null);   // no normaliser: added tokens match the raw text
    }

    /// <summary>
    /// The Metaspace pre-tokeniser on one text segment: every ' ' becomes '▁'; the segment at offset 0 of the text gets a
    /// '▁' in front unless it already starts with one (prepend_scheme "first").
    /// </summary>
    public static string PreTokenize(string segment, bool atStart)
    {
        var s = segment.Replace(' ', SpaceSymbol);
        return atStart && (s.Length == 0 || s[0] != SpaceSymbol) ? SpaceSymbol + s : s;
    }

    /// <summary>Loads a LLaVA / LLaMA tokenizer folder (see the remarks).</summary>
    public static LlamaTokenizer FromFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"LLaMA tokenizer folder not found: {dir}");
        if (File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw new NotSupportedException($"{dir}: has a tokenizer.json; only the tokenizer.model folder layout of LLaVA-7B-v1 is supported (transformers 5 would use tokenizer.json as is)");
        var modelPath = Path.Combine(dir, "tokenizer.model");
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"LLaMA tokenizer: missing tokenizer.model in {dir}", modelPath);
        RequireLlamaClass(dir);
        var proto = SentencePieceModel.Load(modelPath);
        if (proto.Type != SentencePieceModel.ModelType.Bpe)
            throw new NotSupportedException($"{modelPath}: SentencePiece model type {proto.Type} is not supported (LLaMA uses a BPE model)");
        if (proto.PrecompiledCharsMap.Length > 0)
            throw new NotSupportedException($"{modelPath}: a precompiled normalisation charsmap ({proto.NormalizerName}) is not supported (LLaMA uses identity)");
        var config = ClipTokenizerConfig.Read(dir);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < proto.Pieces.Count; i++) vocab[proto.Pieces[i].Text] = i;

        var tokens = new List<AddedToken>();
        var byContent = new Dictionary<string, int>(StringComparer.Ordinal);
        long next = proto.Pieces.Count;
        void Add(AddedToken t)
        {
            if (byContent.ContainsKey(t.Content)) return;   // the first registration keeps its flags
            byContent[t.Content] = tokens.Count;
            tokens.Add(t);
            next = Math.Max(next, t.Id + 1);
        }
        long IdFor(string content) => vocab.TryGetValue(content, out var id) ? id : next;

        // 1. the proto's control (special) and user-defined pieces
        for (int i = 0; i < proto.Pieces.Count; i++)
        {
            var p = proto.Pieces[i];
            if (p.Type is SentencePieceModel.PieceType.Control or SentencePieceModel.PieceType.UserDefined)
                Add(new AddedToken(p.Text, i, p.Type == SentencePieceModel.PieceType.Control, false, false, false, false));
        }
        // 2. added_tokens_decoder of tokenizer_config.json (newer folders), in id order
        foreach (var (key, e) in config.Objects("added_tokens_decoder").OrderBy(d => long.TryParse(d.Key, out var k) ? k : long.MaxValue))
            if (ParseToken(e, null, dir) is { } t) Add(t with { Id = IdFor(t.Content) });
        // 3. the special tokens (bos/eos/unk/pad/...), additional_special_tokens
        var specials = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in AddedTokenLoader.SpecialKeys)
            if (config.TokenElement(key) is { } e && ParseToken(e, true, dir) is { } t)
            {
                specials.Add(t.Content);
                Add(t with { Id = IdFor(t.Content) });
            }
        foreach (var e in config.TokenElements("additional_special_tokens"))
            if (ParseToken(e, true, dir) is { } t)
            {
                specials.Add(t.Content);
                Add(t with { Id = IdFor(t.Content) });
            }
        // 4. added_tokens.json (legacy): normalised unless a special token, with its ids
        var addedPath = Path.Combine(dir, "added_tokens.json");
        if (File.Exists(addedPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(addedPath));
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{addedPath}: expected a JSON object");
                foreach (var p in doc.RootElement.EnumerateObject().OrderBy(p => p.Value.GetInt64()))
                {
                    bool special = specials.Contains(p.Name);
                    Add(new AddedToken(p.Name, p.Value.GetInt64(), special, !special, false, false, false));
                }
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{addedPath}: not a token -> id object ({e.Message})", e);
            }
        }
        string bosToken = config.Token("bos_token") ?? "<s>", eosToken = config.Token("eos_token") ?? "</s>";
        long Lookup(string token, string role) =>
            byContent.TryGetValue(token, out var at) ? tokens[at].Id
            : vocab.TryGetValue(token, out var id) ? id
            : throw new InvalidDataException($"LLaMA tokenizer: {role} '{token}' is neither a piece of {modelPath} nor an added token");
        bool addBos = config.Bool("add_bos_token") ?? true, addEos = config.Bool("add_eos_token") ?? false;
        return new LlamaTokenizer(proto, tokens, Lookup(bosToken, "bos_token"), Lookup(eosToken, "eos_token"), addBos, addEos);
    }

    /// <summary>
    /// The declared tokenizer class (tokenizer_config.json <c>tokenizer_class</c>, when present) must be LlamaTokenizer or
    /// LlamaTokenizerFast, and the prepend scheme 5.12 derives from <c>legacy</c> / <c>add_prefix_space</c> "first".
    /// </summary>
    private static void RequireLlamaClass(string dir)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(path)) return;
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");
            var root = doc.RootElement;
            if (root.TryGetProperty("tokenizer_class", out var c) && c.ValueKind == JsonValueKind.String
                && c.GetString() is not ("LlamaTokenizer" or "LlamaTokenizerFast"))
                throw new NotSupportedException($"{path}: tokenizer_class \"{c.GetString()}\" is not supported (only LLaMA's LlamaTokenizer)");
            if (root.TryGetProperty("legacy", out var l) && l.ValueKind == JsonValueKind.True)
                throw new NotSupportedException($"{path}: \"legacy\": true (transformers' prepend scheme \"always\") is not supported; LLaVA-7B-v1 sets no legacy flag");
            if (root.TryGetProperty("add_prefix_space", out var a) && a.ValueKind == JsonValueKind.False)
                throw new NotSupportedException($"{path}: \"add_prefix_space\": false (transformers' prepend scheme \"never\") is not supported");
        }
    }

    private static AddedToken? ParseToken(JsonElement e, bool? specialDefault, string where)
    {
        if (e.ValueKind == JsonValueKind.String)
        {
            var s = e.GetString()!;
            if (s.Length == 0) return null;
            bool special = specialDefault ?? false;
            return new AddedToken(s, 0, special, !special, false, false, false);
        }
        if (e.ValueKind != JsonValueKind.Object) return null;
        if (!e.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where}: added token without a \"content\" string");
        var content = c.GetString()!;
        if (content.Length == 0) return null;
        bool Flag(string name, bool fallback) =>
            e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        bool isSpecial = specialDefault == true || Flag("special", false);
        return new AddedToken(content, 0, isSpecial, Flag("normalized", !isSpecial), Flag("lstrip", false), Flag("rstrip", false), Flag("single_word", false));
    }

    /// <summary>
    /// transformers' <c>add_tokens(tokens, special_tokens)</c>: a new token gets the next id (<see cref="Count"/>), or its
    /// piece's id if the model has it; a token already added keeps its id and takes the new flags (special, not
    /// normalised). Returns how many ids were added.
    /// </summary>
    public int AddTokens(IEnumerable<string> tokens, bool specialTokens)
    {
        int added = 0;
        foreach (var content in tokens)
        {
            if (string.IsNullOrEmpty(content)) continue;
            int at = _added.FindIndex(t => t.Content == content);
            var token = new AddedToken(content, 0, specialTokens, !specialTokens, false, false, false);
            if (at >= 0)
            {
                _added[at] = token with { Id = _added[at].Id };
                continue;
            }
            long id = _vocab.TryGetValue(content, out var v) ? v : Count;
            _added.Add(token with { Id = id });
            if (id >= Count) { Count = (int)id + 1; added++; }
        }
        _addedVocabulary = Rebuild();
        return added;
    }

    /// <summary>The id of a token (added or piece), as <c>convert_tokens_to_ids</c>; null when unknown.</summary>
    public long? TokenId(string token)
    {
        foreach (var t in _added) if (t.Content == token) return t.Id;
        return _vocab.TryGetValue(token, out var id) ? id : null;
    }

    /// <summary>The ids of <paramref name="text"/> as <c>tokenizer(text)["input_ids"]</c> (with BOS when <see cref="AddBos"/>).</summary>
    public List<long> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<long>();
        if (addSpecialTokens && AddBos) ids.Add(BosId);
        bool atStart = true;
        foreach (var (piece, token) in _addedVocabulary.Split(text))
        {
            if (token is not null) ids.Add(token.Id);
            else if (piece.Length > 0) EncodeWord(PreTokenize(piece, atStart), ids);
            atStart = false;
        }
        if (addSpecialTokens && AddEos) ids.Add(EosId);
        return ids;
    }

    private void EncodeWord(string word, List<long> ids)
    {
        // symbols: each character's piece, else its UTF-8 bytes' <0xXX> pieces, else (fused) unk
        var symbols = new List<int>();
        bool pendingUnk = false;
        for (int i = 0; i < word.Length;)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var ch = word.Substring(i, len);
            i += len;
            if (_vocab.TryGetValue(ch, out var id))
            {
                if (pendingUnk) { symbols.Add(_unkId); pendingUnk = false; }
                symbols.Add(id);
                continue;
            }
            if (_byteFallback)
            {
                var bytes = Encoding.UTF8.GetBytes(ch);
                if (bytes.All(b => _byteIds[b] >= 0))
                {
                    // tokenizers pushes the byte pieces without flushing a pending unk first
                    foreach (var b in bytes) symbols.Add(_byteIds[b]);
                    continue;
                }
            }
            if (_unkId < 0) continue;
            pendingUnk = true;   // fuse_unk
        }
        if (pendingUnk) symbols.Add(_unkId);
        // merges: repeatedly the lowest-ranked adjacent pair, leftmost first
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue, bestId = 0;
            for (int k = 0; k + 1 < symbols.Count; k++)
                if (_merges.TryGetValue((symbols[k], symbols[k + 1]), out var m) && m.Rank < bestRank)
                {
                    best = k;
                    bestRank = m.Rank;
                    bestId = m.Id;
                }
            if (best < 0) break;
            symbols[best] = bestId;
            symbols.RemoveAt(best + 1);
        }
        foreach (var s in symbols) ids.Add(s);
    }

    /// <summary>
    /// transformers' <c>generate_merges(vocab)</c>: for every piece (in id order) its splits into two pieces, sorted by
    /// the parts' ids; then all, stably, by (merged piece id, len(left), len(right)) in code points. Rank = position.
    /// </summary>
    private static Dictionary<(int, int), (int Rank, int Id)> GenerateMerges(string[] pieces, Dictionary<string, int> vocab)
    {
        var all = new List<(int L, int R, int Merged, int LenL, int LenR)>();
        var seenPieces = new HashSet<string>(StringComparer.Ordinal);
        // the Python dict iterates each distinct piece once, at its first position, with its (last) id
        foreach (var piece in pieces)
        {
            if (!seenPieces.Add(piece)) continue;
            int merged = vocab[piece];
            var local = new List<(int L, int R, int LenL, int LenR)>();
            int runes = 0;
            var bounds = new List<int>();
            for (int i = 0; i < piece.Length;)
            {
                bounds.Add(i);
                i += char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
                runes++;
            }
            for (int k = 1; k < bounds.Count; k++)
            {
                var l = piece[..bounds[k]];
                var r = piece[bounds[k]..];
                if (vocab.TryGetValue(l, out var li) && vocab.TryGetValue(r, out var ri))
                    local.Add((li, ri, k, runes - k));
            }
            local.Sort((a, b) => a.L != b.L ? a.L.CompareTo(b.L) : a.R.CompareTo(b.R));
            foreach (var x in local) all.Add((x.L, x.R, merged, x.LenL, x.LenR));
        }
        var ordered = all.Select((m, i) => (m, i)).OrderBy(x => x.m.Merged).ThenBy(x => x.m.LenL).ThenBy(x => x.m.LenR).ThenBy(x => x.i);
        var merges = new Dictionary<(int, int), (int, int)>();
        int rank = 0;
        foreach (var (m, _) in ordered)
        {
            merges.TryAdd((m.L, m.R), (rank, m.Merged));   // tokenizers keeps the first rank of a repeated pair
            rank++;
        }
        return merges;
    }

    /// <summary><c>tokenizer.decode(ids)</c>: special tokens kept, no clean-up (transformers 5.12 ignores
    /// <c>clean_up_tokenization_spaces</c> for a BPE model); ids outside the vocabulary are skipped, as tokenizers does.</summary>
    public string Decode(IEnumerable<long> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        var pending = new List<byte>();
        void Flush()
        {
            if (pending.Count == 0) return;
            try
            {
                sb.Append(new UTF8Encoding(false, true).GetString(pending.ToArray()));
            }
            catch (DecoderFallbackException)
            {
                sb.Append('\uFFFD', pending.Count);
            }
            pending.Clear();
        }
        foreach (var id in ids)
        {
            string? token = _addedById.TryGetValue(id, out var a) ? a : id >= 0 && id < _pieces.Length ? _pieces[id] : null;
            if (token is null) continue;
            token = token.Replace(SpaceSymbol, ' ');
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b))
            {
                pending.Add(b);
                continue;
            }
            Flush();
            sb.Append(token);
        }
        Flush();
        return sb.Length > 0 && sb[0] == ' ' ? sb.ToString(1, sb.Length - 1) : sb.ToString();   // Strip(" ", 1, 0)
    }
}
