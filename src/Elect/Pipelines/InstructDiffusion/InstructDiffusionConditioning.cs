using static TorchSharp.torch;

namespace Elect.Pipelines.InstructDiffusion;

/// <summary>
/// InstructDiffusion's conditioning (the ELECT authors' instructdiffusion pipeline): branches
/// [instruction + image, empty prompt + image, instruction + zero image], guidance
/// <c>0.5 (img + txt) + g_t (cond - img) + g_i (cond - txt)</c> (applied to eps: see the README).
/// </summary>
public sealed class InstructDiffusionConditioning : ThreeBranchConditioning
{
    /// <param name="imageLatents">Image-conditioning latents [1, 4, h, w] (model dtype).</param>
    /// <param name="instruction">The instruction's CLIP hidden states [1, 77, D].</param>
    /// <param name="empty">The empty prompt's [1, 77, D].</param>
    public InstructDiffusionConditioning(Tensor imageLatents, Tensor instruction, Tensor empty) : base(imageLatents, instruction, empty) { }

    protected override bool ThirdBranchReadsInstruction => true;

    protected override Tensor Combine(Tensor cond, Tensor image, Tensor text, float gText, float gImage) =>
        0.5 * (image + text) + gText * (cond - image) + gImage * (cond - text);
}
