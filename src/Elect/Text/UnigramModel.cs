namespace Elect.Text;

/// <summary>
/// A SentencePiece unigram language model: the best segmentation of a word is the one maximising the
/// sum of piece log-probabilities (Viterbi over the lattice of vocabulary matches).
/// </summary>
/// <remarks>
/// Follows the HuggingFace <c>tokenizers</c> Unigram model (the backend of transformers' fast T5
/// tokenizer), which matches SentencePiece: a code point that starts no piece of its own length is
/// covered by an unknown node scored <c>min(piece scores) - 10</c>; ties keep the earlier candidate
/// (candidates ending at a position are visited by start position, then by length); consecutive
/// unknown code points fuse into one unknown id. Every piece of the model takes part in matching,
/// whatever its type (control pieces such as &lt;/s&gt; are split off beforehand as special tokens).
/// </remarks>
internal sealed class UnigramModel
{
    private const double UnkPenalty = 10.0;

    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int Id = -1;
    }

    private readonly Node _root = new();
    private readonly double[] _scores;
    private readonly double _unkScore;

    public int UnkId { get; }
    public int Count => _scores.Length;

    public UnigramModel(IReadOnlyList<(string Piece, double Score)> vocab, int unkId)
    {
        if (unkId < 0 || unkId >= vocab.Count) throw new InvalidDataException($"unigram model: unk id {unkId} outside the vocabulary (0..{vocab.Count - 1})");
        UnkId = unkId;
        _scores = new double[vocab.Count];
        double min = double.PositiveInfinity;
        for (int id = 0; id < vocab.Count; id++)
        {
            var (piece, score) = vocab[id];
            _scores[id] = score;
            if (score < min) min = score;
            if (piece.Length == 0) continue;
            var node = _root;
            foreach (char c in piece)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out var next)) node.Children[c] = next = new Node();
                node = next;
            }
            node.Id = id; // a duplicated piece maps to its last id, as in tokenizers' token_to_ids
        }
        _unkScore = min - UnkPenalty;
    }

    /// <summary>Appends the ids of the best segmentation of <paramref name="word"/> to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> word, List<long> ids)
    {
        int n = word.Length;
        if (n == 0) return;
        var bestScore = new double[n + 1];
        var bestStart = new int[n + 1];
        var bestId = new int[n + 1];
        Array.Fill(bestStart, -1);
        bestStart[0] = 0;

        int pos = 0;
        while (pos < n)
        {
            int charLen = char.IsHighSurrogate(word[pos]) && pos + 1 < n && char.IsLowSurrogate(word[pos + 1]) ? 2 : 1;
            double here = bestScore[pos];
            bool hasSingle = false;
            var node = _root;
            for (int j = pos; j < n; j++)
            {
                if (node.Children is null || !node.Children.TryGetValue(word[j], out node)) break;
                if (node.Id < 0) continue;
                int end = j + 1;
                double candidate = here + _scores[node.Id];
                if (bestStart[end] < 0 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    bestStart[end] = pos;
                    bestId[end] = node.Id;
                }
                if (end - pos == charLen) hasSingle = true;
            }
            if (!hasSingle)
            {
                int end = pos + charLen;
                double candidate = here + _unkScore;
                if (bestStart[end] < 0 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    bestStart[end] = pos;
                    bestId[end] = UnkId;
                }
            }
            pos += charLen;
        }

        var reversed = new List<int>();
        for (int end = n; end > 0; end = bestStart[end])
        {
            int id = bestId[end];
            if (id == UnkId && reversed.Count > 0 && reversed[^1] == UnkId) continue; // fuse unknowns
            reversed.Add(id);
        }
        for (int k = reversed.Count - 1; k >= 0; k--) ids.Add(reversed[k]);
    }
}
