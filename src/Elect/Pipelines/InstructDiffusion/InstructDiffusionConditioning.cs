using static TorchSharp.torch;

namespace Elect.Pipelines.InstructDiffusion;

/// <summary>
/// InstructDiffusion's conditioning (the ELECT authors' instructdiffusion pipeline): branches
/// [instruction + image, empty prompt + image, instruction + zero image], guidance
/// <c>0.5 (img + txt) + g_t (cond - img) + g_i (cond - txt)</c> (applied to eps: see the README).
/// </summary>
public sealed class InstructDiffusionConditioning : ThreeBranchConditioning
{
    private readonly int _hidden;

    /// <param name="imageLatents">Image-conditioning latents [1, 4, h, w] (model dtype).</param>
    /// <param name="instruction">The instruction's CLIP hidden states [1, 77, D].</param>
    /// <param name="empty">The empty prompt's [1, 77, D].</param>
    public InstructDiffusionConditioning(Tensor imageLatents, Tensor instruction, Tensor empty) : base(imageLatents) =>
        _hidden = AddPrompt(instruction, empty);

    /// <summary>The CLIP hidden states of n candidates' branch batch [3n, 77, D].</summary>
    public Tensor HiddenStatesFor(long n) => PromptFor(_hidden, n);

    protected override bool ThirdBranchReadsInstruction => true;

    protected override Tensor Combine(Tensor cond, Tensor image, Tensor text, float gText, float gImage) =>
        0.5 * (image + text) + gText * (cond - image) + gImage * (cond - text);
}
