using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines;

/// <summary>
/// What one edit needs from an editing model, computed once per (image, instruction): the family's own
/// conditioning (opaque to the engine) and the decoded input image the BIS is measured against.
/// </summary>
public sealed class EditCondition : IDisposable
{
    /// <summary>decode(image latents) [1, 3, H, W] in [-1, 1], float32: the reference the BIS compares against.</summary>
    public required Tensor DecodedInput { get; init; }

    /// <summary>The family's conditioning (prompt embeddings, image latents, branch layout); the engine never inspects it.</summary>
    public required FamilyConditioning Conditioning { get; init; }

    /// <summary>Size of the noisy latents.</summary>
    public required long LatentHeight { get; init; }
    public required long LatentWidth { get; init; }

    /// <summary>What the family's multimodal LLM wrote for this edit (MGIE's expressive instruction); null for the other families.</summary>
    public GeneratedInstruction? Generated { get; set; }

    public long ImageHeight => DecodedInput.shape[2];
    public long ImageWidth => DecodedInput.shape[3];

    /// <summary>
    /// Makes the condition the sole owner of its tensors (detached from any dispose scope open while
    /// it was built), so a model can build it inside a scope that frees every temporary.
    /// </summary>
    public EditCondition Owned()
    {
        DecodedInput.DetachFromDisposeScope();
        Conditioning.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        DecodedInput.Dispose();
        Conditioning.Dispose();
    }
}

/// <summary>
/// The instruction a family's multimodal LLM generated from the image and the user's instruction (MGIE's expressive
/// instruction, after its <c>remove_alter</c> clean-up) and how many tokens it generated.
/// </summary>
public sealed record GeneratedInstruction(string Text, int GeneratedTokens);

/// <summary>The guided prediction of n candidates [n, C, h, w] and the two branch outputs the relevance map compares (text and image branch).</summary>
public readonly record struct GuidedPrediction(Tensor Guided, Tensor Text, Tensor Image);

/// <summary>
/// A family's conditioning of one edit: it owns the branch layout of the guided model call and the guidance
/// formula. Only the family that made it reads its contents.
/// </summary>
public abstract class FamilyConditioning : IDisposable
{
    /// <summary>
    /// The guided prediction of n candidates from their scaled latents [n, C_lat, h, w] (model dtype):
    /// builds the branch batch, evaluates it with <paramref name="model"/> (the raw batched model call) and
    /// combines the branch outputs.
    /// </summary>
    public abstract GuidedPrediction Predict(Tensor scaledLatents, Func<Tensor, Tensor> model, float gText, float gImage);

    /// <summary>Detaches this conditioning's tensors from any open dispose scope.</summary>
    public abstract void DetachFromDisposeScope();

    protected abstract void Dispose(bool disposing);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Three-branch instruction guidance as the InstructPix2Pix-style families lay it out: n candidates become a
/// batch of 3n whose image conditioning is [image latents ×2n, zeros ×n] and whose prompt conditionings are
/// [instruction ×n, empty ×n, third ×n]; the family gives the third branch's prompt and the formula. The
/// batched conditioning tensors of each n are built once and cached.
/// </summary>
public abstract class ThreeBranchConditioning : FamilyConditioning
{
    private readonly Dictionary<(int, long), Tensor> _cache = [];
    private readonly List<(Tensor Instruction, Tensor Empty)> _prompts = [];

    private readonly int _hidden;

    /// <param name="imageLatents">Image-conditioning latents [1, C_img, h, w] in the model dtype.</param>
    /// <param name="instruction">The instruction's prompt embeddings (encoder hidden states) [1, L, D].</param>
    /// <param name="empty">The empty prompt's [1, L, D].</param>
    protected ThreeBranchConditioning(Tensor imageLatents, Tensor instruction, Tensor empty)
    {
        ImageLatents = imageLatents;
        _hidden = AddPrompt(instruction, empty);
    }

    public Tensor ImageLatents { get; }

    /// <summary>The prompt embeddings (encoder hidden states) of n candidates' branch batch [3n, L, D].</summary>
    public Tensor HiddenStatesFor(long n) => PromptFor(_hidden, n);

    /// <summary>Whether the third branch reads the instruction's prompt (else the empty prompt's).</summary>
    protected abstract bool ThirdBranchReadsInstruction { get; }

    /// <summary>The guidance formula over the branch outputs [n, C, h, w].</summary>
    protected abstract Tensor Combine(Tensor first, Tensor second, Tensor third, float gText, float gImage);

    /// <summary>Registers a prompt conditioning (instruction's [1, ...], empty prompt's [1, ...]); returns its handle for <see cref="PromptFor"/>.</summary>
    protected int AddPrompt(Tensor instruction, Tensor empty)
    {
        _prompts.Add((instruction, empty));
        return _prompts.Count - 1;
    }

    /// <summary>The image conditioning of n candidates: [image latents ×2n, zeros ×n].</summary>
    public Tensor ImageConditionFor(long n) => Cached(-1, n, () =>
    {
        using var zeros = zeros_like(ImageLatents);
        return Branches(n, ImageLatents, ImageLatents, zeros);
    });

    /// <summary>A prompt conditioning of n candidates: [instruction ×n, empty ×n, empty (or instruction) ×n].</summary>
    protected Tensor PromptFor(int prompt, long n)
    {
        var (instruction, empty) = _prompts[prompt];
        return Cached(prompt, n, () => Branches(n, instruction, empty, ThirdBranchReadsInstruction ? instruction : empty));
    }

    public override GuidedPrediction Predict(Tensor scaledLatents, Func<Tensor, Tensor> model, float gText, float gImage)
    {
        long n = scaledLatents.shape[0];
        using var tripled = cat([scaledLatents, scaledLatents, scaledLatents], 0);
        using var input = cat([tripled, ImageConditionFor(n)], 1);
        var output = model(input);
        var parts = output.chunk(3, 0);
        return new GuidedPrediction(Combine(parts[0], parts[1], parts[2], gText, gImage), parts[0], parts[1]);
    }

    public override void DetachFromDisposeScope()
    {
        ImageLatents.DetachFromDisposeScope();
        foreach (var (a, b) in _prompts) { a.DetachFromDisposeScope(); b.DetachFromDisposeScope(); }
    }

    private Tensor Cached(int key, long n, Func<Tensor> build)
    {
        if (_cache.TryGetValue((key, n), out var t)) return t;
        t = build().DetachFromDisposeScope();   // reused across steps: owned by this conditioning, not a step's scope
        _cache[(key, n)] = t;
        return t;
    }

    private static Tensor Branches(long n, Tensor text, Tensor image, Tensor uncond)
    {
        Tensor Repeat(Tensor t) { var shape = t.shape.ToArray(); shape[0] = n; return t.expand(shape); }
        using var a = Repeat(text);
        using var b = Repeat(image);
        using var c = Repeat(uncond);
        return cat([a, b, c], 0);
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        ImageLatents.Dispose();
        foreach (var (a, b) in _prompts) { a.Dispose(); b.Dispose(); }
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
    }
}
